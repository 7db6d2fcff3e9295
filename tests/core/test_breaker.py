"""Agents cannot flood the humans: the circuit breaker, clearing a suspended agent's queue,
blast-radius budgets per grant, and the escalation digest."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent
from agents.services import policy_publish
from approvals import services
from approvals.models import Decision, Proposal, ProposalStatus
from audit.models import AuditEvent
from soc_console.errors import InvalidInput, NotPermitted, WrongState
from tests import factories

pytestmark = pytest.mark.django_db


def _body(target: str, *, action: str = "isolate_host", confidence: float = 0.7) -> str:
    return json.dumps(
        {
            "action": action,
            "target": target,
            "params": {},
            "confidence": confidence,
            "rationale": "Beaconing to a known C2 domain every 60 s.",
            "evidence": [{"kind": "alert", "ref": "SIEM-1"}],
            "severity": "high",
        }
    )


def _client(bot: factories.AgentWithKey) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bot.raw_key}")
    return client


def _post(client: APIClient, target: str, **kwargs: Any) -> Any:
    return client.post(
        "/api/v1/proposals/",
        data=_body(target, **kwargs),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )


# --- the circuit breaker ------------------------------------------------------------------


def test_breaker_by_open_proposals_suspends_audits_mails_once_and_refuses_after(
    manager: User, django_capture_on_commit_callbacks: Any
) -> None:
    bot = factories.agent("storm-bot", grants={"isolate_host": 2}, max_pending=3)
    client = _client(bot)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [_post(client, f"ws-{n:04d}.corp.example") for n in range(6)]

    assert [a.status_code for a in answers] == [201, 201, 201, 403, 403, 403]
    tripping = answers[3].json()
    assert tripping["code"] == "agent_suspended"
    assert answers[3]["Content-Type"].startswith("application/problem+json")
    assert {a.json()["code"] for a in answers[3:]} == {"agent_suspended"}
    agent = Agent.objects.get(slug="storm-bot")
    assert agent.suspended
    assert "max_pending" in agent.suspended_reason and "3" in agent.suspended_reason
    events = AuditEvent.objects.filter(event_type="agent.suspended")
    assert events.count() == 1
    event = events.get()
    assert event.actor == "system" and event.actor_type == "system"
    assert event.data["breaker"] == {"limit": "max_pending", "allowed": 3, "seen": 3}
    # One mail to the managers for the suspension, not one per refused proposal.
    assert [m.to for m in mail.outbox] == [[manager.email]]
    assert "storm-bot" in mail.outbox[0].subject and "circuit breaker" in mail.outbox[0].subject
    assert Proposal.objects.filter(agent=agent, status=ProposalStatus.PENDING).count() == 3
    assert Proposal.objects.filter(agent=agent, status=ProposalStatus.BLOCKED).count() == 3


def test_breaker_by_rate_counts_every_proposal_of_the_last_minute(manager: User) -> None:
    bot = factories.agent(
        "chatty-bot", grants={"create_ticket": 1}, max_pending=100, max_proposals_per_minute=4
    )
    client = _client(bot)
    codes = [_post(client, f"INC-{n}", action="create_ticket").status_code for n in range(5)]
    # Advisory proposals are never pending: only the rate can trip here.
    assert codes == [201, 201, 201, 201, 403]
    event = AuditEvent.objects.get(event_type="agent.suspended")
    assert event.data["breaker"]["limit"] == "max_proposals_per_minute"
    assert event.data["breaker"]["allowed"] == 4
    assert "max_proposals_per_minute" in Agent.objects.get(slug="chatty-bot").suspended_reason


def test_breaker_forgets_proposals_older_than_a_minute() -> None:
    bot = factories.agent(
        "steady-bot", grants={"create_ticket": 1}, max_pending=100, max_proposals_per_minute=2
    )
    client = _client(bot)
    assert _post(client, "INC-1", action="create_ticket").status_code == 201
    assert _post(client, "INC-2", action="create_ticket").status_code == 201
    Proposal.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    assert _post(client, "INC-3", action="create_ticket").status_code == 201
    assert not Agent.objects.get(slug="steady-bot").suspended


def test_breaker_counts_up_to_a_limit_the_table_could_reach_and_not_past_it() -> None:
    """A limit above what the whole table could hold is never reached, so nothing is counted;
    one within it is counted, up to the limit, as always."""
    from django.db import connection

    from approvals import sql

    bot = factories.agent("busy-bot", grants={"isolate_host": 2}, max_pending=10**9)
    client = _client(bot)
    assert [_post(client, f"ws-{n:04d}.corp.example").status_code for n in range(3)] == [201] * 3
    since = timezone.now() - timedelta(minutes=1)

    def counts(limit: int) -> tuple[int | None, int | None]:
        return sql.breaker_counts(
            bot.agent.pk, since=since, max_pending=limit, max_per_minute=limit
        )

    assert counts(3) == (3, 3)
    assert counts(2) == (2, 2)
    if connection.vendor != "postgresql":
        assert counts(10**9) == (3, 3)  # SQLite counts every time
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size('approvals_proposal') / 28")
        (reachable,) = cursor.fetchone()
    assert reachable >= 3
    assert counts(reachable) == (3, 3)
    assert counts(reachable + 1) == (None, None)
    assert counts(10**9) == (None, None)
    assert not Agent.objects.get(slug="busy-bot").suspended


def test_breaker_still_suspends_at_exactly_its_limit_on_a_busy_table() -> None:
    # Other agents' proposals make the table big: the bound then admits the count.
    other = factories.agent("other-bot", grants={"isolate_host": 2}, max_pending=10**9)
    client = _client(other)
    for n in range(20):
        assert _post(client, f"ws-{n:04d}.corp.example").status_code == 201
    bot = factories.agent("edge-bot", grants={"isolate_host": 2}, max_pending=2)
    client = _client(bot)
    codes = [_post(client, f"ws-{n:04d}.corp.example").status_code for n in range(3)]
    assert codes == [201, 201, 403]
    event = AuditEvent.objects.get(event_type="agent.suspended")
    assert event.data["breaker"] == {"limit": "max_pending", "allowed": 2, "seen": 2}


# --- a suspended agent's cards --------------------------------------------------------------


def _suspended_with_pending(n: int, senior: User) -> tuple[Agent, list[Proposal]]:
    bot = factories.agent("flood-bot", grants={"isolate_host": 2})
    pending = [factories.proposal(bot, target=f"ws-{i:04d}.corp.example") for i in range(n)]
    services.agent_suspend(agent=bot.agent, by=senior, reason="flooding the queue")
    return Agent.objects.get(pk=bot.agent.pk), pending


def test_a_suspended_agents_card_cannot_be_approved(analyst: User, senior: User) -> None:
    _agent, pending = _suspended_with_pending(1, senior)
    with pytest.raises(WrongState) as refused:
        services.proposal_approve(proposal_id=pending[0].pk, analyst=analyst)
    assert refused.value.code == "agent_suspended"
    assert "flood-bot is suspended" in refused.value.detail
    assert not Decision.objects.exists()
    assert Proposal.objects.get(pk=pending[0].pk).status == ProposalStatus.PENDING


def test_the_api_refuses_approving_a_suspended_agents_card_with_409(
    analyst: User, senior: User
) -> None:
    _agent, pending = _suspended_with_pending(1, senior)
    client = APIClient()
    client.force_authenticate(analyst)
    response = client.post(
        f"/api/v1/proposals/{pending[0].pk}/decisions/", {"verdict": "approve"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "agent_suspended"


def test_the_console_shows_why_and_refuses_the_approval(analyst: User, senior: User) -> None:
    _agent, pending = _suspended_with_pending(2, senior)
    browser = Client()
    browser.force_login(analyst)
    page = browser.get("/").content.decode()
    assert page.count('<span class="badge suspended">suspended</span>') == 2
    assert "flood-bot is suspended</strong>" in page  # the queue's notice
    answer = browser.post(
        f"/proposals/{pending[0].pk}/decide/", {"verdict": "approve"}, HTTP_HX_REQUEST="true"
    )
    assert "cannot be approved" in answer.content.decode()
    assert Proposal.objects.get(pk=pending[0].pk).status == ProposalStatus.PENDING


def test_a_senior_clears_a_suspended_agents_queue_each_withdrawal_audited(
    analyst: User, senior: User
) -> None:
    agent, pending = _suspended_with_pending(4, senior)
    other = factories.proposal(
        factories.agent("quiet-bot", grants={"isolate_host": 2}), target="ws-9999.corp.example"
    )
    browser = Client()
    browser.force_login(senior)
    answer = browser.post(
        f"/agents/{agent.slug}/clear/",
        {"reason": "storm from a broken model"},
        HTTP_HX_REQUEST="true",
    )
    assert "4 pending proposals of flood-bot cleared" in answer.content.decode()
    for proposal in pending:
        proposal.refresh_from_db()
        assert proposal.status == ProposalStatus.WITHDRAWN
        event = AuditEvent.objects.get(proposal_id=proposal.pk, event_type="proposal.withdrawn")
        assert event.actor == senior.username
        assert event.data == {"reason": "storm from a broken model", "on_behalf_of": "flood-bot"}
    assert not Decision.objects.exists()
    assert Proposal.objects.get(pk=other.pk).status == ProposalStatus.PENDING


def test_a_manager_clears_by_withdrawing_on_the_agents_behalf(senior: User, manager: User) -> None:
    agent, pending = _suspended_with_pending(2, senior)
    report = services.agent_pending_clear(agent=agent, by=manager, reason="contained elsewhere")
    assert report.cleared == 2 and report.refused == {}
    events = AuditEvent.objects.filter(event_type="proposal.withdrawn").order_by("seq")
    assert [e.proposal_id for e in events] == [p.pk for p in pending]
    assert {e.actor for e in events} == {manager.username}
    assert {e.data["on_behalf_of"] for e in events} == {"flood-bot"}
    assert not Decision.objects.exists()


def test_an_analyst_may_not_clear_and_a_reason_is_required(analyst: User, senior: User) -> None:
    agent, pending = _suspended_with_pending(1, senior)
    with pytest.raises(NotPermitted):
        services.agent_pending_clear(agent=agent, by=analyst, reason="enough of this")
    browser = Client()
    browser.force_login(analyst)
    assert browser.post(f"/agents/{agent.slug}/clear/", {"reason": "enough"}).status_code == 403
    with pytest.raises(InvalidInput) as refused:
        services.agent_pending_clear(agent=agent, by=senior, reason=" ")
    assert "reason" in refused.value.extra["errors"]
    assert Proposal.objects.get(pk=pending[0].pk).status == ProposalStatus.PENDING


def test_a_senior_analyst_may_suspend_an_agent_from_the_console(senior: User) -> None:
    bot = factories.agent("odd-bot", grants={"isolate_host": 2})
    browser = Client()
    browser.force_login(senior)
    browser.post("/agents/odd-bot/suspend/", {"suspend": "1", "reason": "odd behaviour"})
    assert Agent.objects.get(pk=bot.agent.pk).suspended
    assert AuditEvent.objects.get(event_type="agent.suspended").actor == senior.username


def _resume(browser: Client, slug: str) -> list[str]:
    """Resume the agent from its page; what the manager reads after."""
    browser.post(f"/agents/{slug}/suspend/", {"suspend": "0"})
    return [m.message for m in get_messages(browser.get("/agents/").wsgi_request)]


def test_resuming_an_agent_still_at_its_limit_warns_that_it_will_trip_again(
    manager: User,
) -> None:
    # Reported: Resume said "resumed." and the next proposal suspended the agent again, mailing
    # the managers each time.
    bot = factories.agent("storm-bot", grants={"isolate_host": 2}, max_pending=3)
    client = _client(bot)
    for n in range(4):
        _post(client, f"ws-{n:04d}.corp.example")
    browser = Client()
    browser.force_login(manager)

    text = _resume(browser, "storm-bot")
    assert text == [
        "storm-bot resumed, but it still has 3 pending proposals, at its limit of 3: its next "
        "proposal suspends it again. Clear its pending proposals (or raise its limit) first."
    ]
    assert not Agent.objects.get(slug="storm-bot").suspended

    # Over its limit (its proposals came in before the limit was lowered to 3): the manager
    # reads the whole count, not the limit the breaker counted up to.
    policy_publish(agent=bot.agent, by="tests", max_pending=20)
    for n in range(4, 9):
        _post(client, f"ws-{n:04d}.corp.example")
    policy_publish(agent=bot.agent, by="tests", max_pending=3)
    services.agent_suspend(agent=bot.agent, by=manager, reason="checking")
    text = _resume(browser, "storm-bot")
    assert text == [
        "storm-bot resumed, but it still has 8 pending proposals, over its limit of 3: its next "
        "proposal suspends it again. Clear its pending proposals (or raise its limit) first."
    ]

    # Below its limit, resuming says only that.
    services.agent_suspend(agent=bot.agent, by=manager, reason="checking")
    services.agent_pending_clear(agent=bot.agent, by=manager, reason="stale")
    text = _resume(browser, "storm-bot")
    assert text == ["storm-bot resumed."]


def test_resuming_an_agent_at_its_rate_limit_warns_that_it_will_trip_again(
    manager: User,
) -> None:
    # The rate limit as well as the open-proposal one: an agent that sent its minute's worth
    # is suspended again by its next proposal within the minute, and the resume says so.
    bot = factories.agent(
        "chatty-bot", grants={"isolate_host": 2}, max_pending=50, max_proposals_per_minute=3
    )
    client = _client(bot)
    for n in range(4):
        _post(client, f"ws-{n:04d}.corp.example")
    assert Agent.objects.get(slug="chatty-bot").suspended
    browser = Client()
    browser.force_login(manager)

    text = _resume(browser, "chatty-bot")
    assert text == [
        "chatty-bot resumed, but it sent 3 or more proposals in the last minute, its limit for a "
        "minute: a proposal within the minute suspends it again. Stop what floods it (or raise "
        "its limit) first."
    ]
    assert not Agent.objects.get(slug="chatty-bot").suspended
    # What it says is what happens: the next proposal trips the same limit.
    assert _post(client, "ws-0009.corp.example").json()["code"] == "agent_suspended"
    suspended = AuditEvent.objects.filter(event_type="agent.suspended").order_by("seq")
    assert suspended.last().data["breaker"]["limit"] == "max_proposals_per_minute"

    # A minute later the same agent is below the limit, and the resume says only that.
    Proposal.objects.filter(agent=bot.agent).update(
        created_at=timezone.now() - timedelta(minutes=2)
    )
    text = _resume(browser, "chatty-bot")
    assert text == ["chatty-bot resumed."]


# --- blast-radius budgets -------------------------------------------------------------------


def test_budget_of_automatic_executions_sends_the_next_to_a_human() -> None:
    bot = factories.agent("fast-bot", grants={"block_ip": 3}, budgets={"block_ip": (2, 10)})
    client = _client(bot)
    answers = [
        _post(client, f"203.0.113.{n}", action="block_ip", confidence=0.95).json()
        for n in range(1, 4)
    ]
    assert [a["status"] for a in answers] == ["auto_approved", "auto_approved", "pending"]
    routed = answers[2]["routing"]
    assert routed["outcome"] == "pending" and routed["code"] == "budget_exhausted"
    assert routed["reason"].startswith("budget_exhausted")
    assert "2 automatic executions of block_ip" in routed["reason"]
    assert answers[2]["code"] is None  # not blocked: the top-level code is the 403's only
    assert answers[2]["required_approvals"] == 1


def test_budget_of_distinct_targets_admits_a_target_already_hit() -> None:
    bot = factories.agent("wide-bot", grants={"block_ip": 3}, budgets={"block_ip": (50, 2)})
    client = _client(bot)

    def status(target: str) -> tuple[str, str | None]:
        body = _post(client, target, action="block_ip", confidence=0.95).json()
        return body["status"], body["routing"]["code"]

    assert status("203.0.113.1") == ("auto_approved", None)
    assert status("203.0.113.2") == ("auto_approved", None)
    assert status("203.0.113.1") == ("auto_approved", None)  # not a new target
    assert status("203.0.113.3") == ("pending", "budget_exhausted")


def test_budget_counts_only_the_last_hour_and_carries_over_to_new_versions() -> None:
    bot = factories.agent("hourly-bot", grants={"block_ip": 3}, budgets={"block_ip": (1, 10)})
    client = _client(bot)
    assert _post(client, "203.0.113.1", action="block_ip", confidence=0.95).json()["status"] == (
        "auto_approved"
    )
    policy_publish(agent=bot.agent, by="tests", auto_threshold=0.9)  # v2 keeps the budget
    assert bot.agent.current_policy.grants.get().max_auto_per_hour == 1
    assert _post(client, "203.0.113.2", action="block_ip", confidence=0.95).json()["status"] == (
        "pending"
    )
    Proposal.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    assert _post(client, "203.0.113.3", action="block_ip", confidence=0.95).json()["status"] == (
        "auto_approved"
    )


def test_create_agent_sets_breaker_and_budget() -> None:
    call_command(
        "create_agent",
        "cli-bot",
        "--grant",
        "block_ip=3",
        "--budget",
        "block_ip=5/3",
        "--max-pending",
        "7",
        "--max-per-minute",
        "9",
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    policy = Agent.objects.get(slug="cli-bot").current_policy
    assert (policy.max_pending, policy.max_proposals_per_minute) == (7, 9)
    grant = policy.grants.get()
    assert (grant.max_auto_per_hour, grant.max_targets_per_hour) == (5, 3)


def test_defaults_are_stated() -> None:
    bot = factories.agent("plain-bot", grants={"block_ip": 3})
    policy = bot.agent.current_policy
    assert (policy.max_pending, policy.max_proposals_per_minute) == (50, 30)
    grant = policy.grants.get()
    assert (grant.max_auto_per_hour, grant.max_targets_per_hour) == (20, 10)


# --- the escalation digest ------------------------------------------------------------------


def test_a_storm_of_escalations_mails_each_senior_once_per_window(
    senior: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ESCALATION_DIGEST_MINUTES = 15
    other_senior = factories.user("sue", factories.SENIOR)
    bot = factories.agent(
        "storm-bot", grants={"isolate_host": 2}, max_pending=1000, max_proposals_per_minute=1000
    )
    for n in range(300):
        factories.proposal(bot, target=f"ws-{n:04d}.corp.example", settle=False)
    Proposal.objects.update(escalate_at=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        report = services.sweep()
    assert report.escalated == 300 and report.digested == 300
    assert sorted(m.to[0] for m in mail.outbox) == sorted([senior.email, other_senior.email])
    assert all(len(m.to) == 1 for m in mail.outbox)
    assert "300 escalated proposals" in mail.outbox[0].subject
    assert mail.outbox[0].body.count("/proposals/") == 300
    digest = AuditEvent.objects.get(event_type="escalation.digest_sent")
    assert len(digest.data["proposals"]) == 300

    # More escalations within the window wait for it to end.
    late = factories.proposal(bot, target="ws-late.corp.example")
    Proposal.objects.filter(pk=late.pk).update(escalate_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sweep().digested == 0
    assert len(mail.outbox) == 2

    # Once it has ended, the next digest lists only what escalated since the last.
    # (The log is append-only, so the clock moves instead of the last digest's time.)
    later = timezone.now() + timedelta(minutes=16)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.escalation_digest_send(now=later) == 1
    assert len(mail.outbox) == 4
    assert "1 escalated proposal " in mail.outbox[-1].subject
    assert "ws-late.corp.example" in mail.outbox[-1].body
