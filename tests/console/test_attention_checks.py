"""Attention checks: inserted at a team's rate, caught when rejected, stopped when approved; never
executed, never seen by an agent, marked synthetic in the audit log."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from agents.models import Agent
from approvals import attention, services, tasks
from approvals.models import (
    CHECKS_AGENT,
    PROPOSED_FIELDS,
    AttentionCheck,
    CheckFlaw,
    CheckOutcome,
    ConnectorCall,
    Decision,
    Execution,
    ExecutionStatus,
    Proposal,
    Team,
)
from audit.models import AuditEvent
from soc_console.errors import DomainError
from tests import factories
from tests.execution.conftest import broker_messages

pytestmark = pytest.mark.django_db


@dataclass
class Hook:
    url: str
    received: list[bytes] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A real HTTP endpoint standing in for the agent's callback receiver: records every POST."""
    state = Hook(url="")
    received = state.received

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _check(
    agent: factories.AgentWithKey, flaw: CheckFlaw = CheckFlaw.OTHER_HOST, team: Team | None = None
) -> Proposal:
    model = factories.proposal(agent, target="ws-0142.corp.example")
    # Decided, as the checks' models are: a check does not join an open card's group.
    reviewer = User.objects.filter(username="reviewer").first()
    reviewer = reviewer or factories.user("reviewer", factories.ANALYST)
    services.proposal_reject(proposal_id=model.id, analyst=reviewer, reason="benign")
    check = services.attention_check_insert(team=team, model=model, flaw=flaw, rng=random.Random(3))
    assert check is not None
    return check


def test_a_check_reads_like_its_model_but_belongs_to_the_checks_agent(
    agent_with_key: factories.AgentWithKey, analyst: User, signed_in: Callable[[User], Client]
) -> None:
    check = _check(agent_with_key)

    assert check.synthetic and check.status == "pending"
    assert check.agent.slug == CHECKS_AGENT
    assert check.agent_shown == agent_with_key.agent.slug
    assert "seen on ws-0217.corp.example" in check.rationale
    page = signed_in(analyst).get("/").content.decode()
    card = page[page.index(f'id="card-{check.id}"') :]
    card = card[: card.index("</article>")]
    assert f"<dd>{agent_with_key.agent.slug}</dd>" in card
    assert CHECKS_AGENT not in page  # not on the card, not in the queue's agent filter
    [inserted] = AuditEvent.objects.filter(proposal_id=check.id)
    assert inserted.event_type == "attention_check.inserted"
    assert inserted.data["synthetic"] is True
    assert inserted.data["flaw"] == "other_host"


def test_a_check_copies_every_field_a_proposal_says_and_changes_only_its_flaws() -> None:
    """The card a check shows is read by the names the proposal row uses: a field added to one
    and not the other fails here, not on an analyst's screen."""
    card_fields = {f.name for f in dataclasses.fields(attention.Model)} - {"agent"}
    assert card_fields == set(PROPOSED_FIELDS)
    assert set(PROPOSED_FIELDS) <= {f.name for f in Proposal._meta.get_fields()}
    model = attention.Model(
        agent="edr-responder",
        action="block_ip",
        target="203.0.113.9",
        params={"duration_minutes": 60},
        confidence=0.7,
        rationale="Beaconing to a known C2.",
        evidence=[{"kind": "siem", "ref": "SIEM-7"}],
        severity="medium",
    )
    for flaw in attention.flaws_for(model.action):
        composed = attention.compose(model, random.Random(3), flaw)
        changed = {
            name for name in PROPOSED_FIELDS if getattr(composed, name) != getattr(model, name)
        }
        assert changed and changed <= {"target", "rationale", "evidence"}, (flaw, changed)
        assert (composed.agent, composed.action, composed.params) == (
            model.agent,
            model.action,
            model.params,
        )


def test_each_flaw_is_one_a_careful_reader_sees() -> None:
    model = attention.Model(
        agent="edr-responder",
        action="isolate_host",
        target="ws-0142.corp.example",
        params={},
        confidence=0.8,
        rationale="Ransomware canary file modified.",
        evidence=[{"kind": "edr", "ref": "EDR-1"}],
        severity="high",
    )
    rng = random.Random(1)
    other = attention.compose(model, rng, CheckFlaw.OTHER_HOST)
    assert other.target == model.target and "ws-0142" not in other.rationale.split("seen on")[1]
    contradicts = attention.compose(model, rng, CheckFlaw.EVIDENCE_CONTRADICTS)
    assert any(
        "false positive" in e.get("note", "")
        or "benign" in e.get("note", "")
        or "no threat" in e.get("note", "")
        for e in contradicts.evidence
    )
    wrong = attention.compose(model, rng, CheckFlaw.WRONG_KIND)
    assert "@" in wrong.target  # a user where a host belongs
    assert wrong.target in wrong.explanation


def test_rejecting_a_check_counts_as_caught(
    agent_with_key: factories.AgentWithKey, analyst: User, signed_in: Callable[[User], Client]
) -> None:
    check = _check(agent_with_key)

    response = signed_in(analyst).post(
        f"/proposals/{check.id}/decide/",
        {"verdict": "reject", "reason": "rationale names another host", "seconds_on_card": "7"},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 200
    assert "attention check" in response.content.decode()
    row = AttentionCheck.objects.get(proposal=check)
    assert (row.outcome, row.analyst, row.seconds_on_card) == (CheckOutcome.CAUGHT, analyst, 7)
    rejected = AuditEvent.objects.get(proposal_id=check.id, event_type="proposal.rejected")
    assert rejected.data["synthetic"] is True
    assert rejected.data["attention_check"]["outcome"] == "caught"


def test_approving_a_check_runs_nothing_reaches_no_agent_and_says_what_was_wrong(
    agent_with_key: factories.AgentWithKey,
    analyst: User,
    signed_in: Callable[[User], Client],
    hook: Hook,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # The agent the check is modelled on listens for callbacks: it must hear nothing of it.
    Agent.objects.filter(pk=agent_with_key.agent.pk).update(
        callback_url=hook.url, callback_secret="s" * 32
    )
    check = _check(agent_with_key, CheckFlaw.WRONG_KIND)
    before = len(broker_messages()), len(broker_messages(settings.CALLBACK_QUEUE))

    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(analyst).post(
            f"/proposals/{check.id}/decide/",
            {"verdict": "approve", "seconds_on_card": "2"},
            HTTP_HX_REQUEST="true",
        )

    text = response.content.decode()
    assert response.status_code == 200
    assert "Stopped: this card was an attention check, and nothing was run." in text
    assert "is a user account" in text  # what the card got wrong
    assert json.loads(response.headers["HX-Trigger"])["console:answered"]["outcome"] == "decided"
    check.refresh_from_db()
    assert check.status == "withdrawn"
    assert not Execution.objects.filter(proposal=check).exists()
    assert not Decision.objects.filter(proposal=check).exists()  # nothing was approved
    assert not ConnectorCall.objects.exists()
    after = len(broker_messages()), len(broker_messages(settings.CALLBACK_QUEUE))
    assert after == before  # no execution task, no callback task
    # A delivery asked for by name still sends nothing.
    assert tasks.deliver_callback.apply(args=[str(check.id), "decided"]).get() is None
    assert hook.received == []
    row = AttentionCheck.objects.get(proposal=check)
    assert (row.outcome, row.analyst) == (CheckOutcome.MISSED, analyst)
    missed = AuditEvent.objects.get(proposal_id=check.id, event_type="attention_check.missed")
    assert missed.data["synthetic"] is True and missed.data["verdict"] == "approve"


def test_a_check_is_never_bulk_approved_into_execution(
    agent_with_key: factories.AgentWithKey, analyst: User
) -> None:
    check = _check(agent_with_key, CheckFlaw.EVIDENCE_CONTRADICTS)
    real = factories.proposal(agent_with_key, target="ws-0217.corp.example")

    summary = services.proposals_decide_bulk(
        proposal_ids=[str(real.id), str(check.id)], analyst=analyst, verdict="approve"
    )

    assert [item.proposal_id for item in summary.done] == [str(real.id)]
    [refused] = summary.refused
    assert refused.code == "attention_check" and "nothing was run" in refused.refusal
    assert not Execution.objects.filter(proposal=check).exists()
    assert AttentionCheck.objects.get(proposal=check).outcome == CheckOutcome.MISSED


def test_the_claim_refuses_an_execution_of_a_check_whatever_made_it(
    agent_with_key: factories.AgentWithKey,
) -> None:
    check = _check(agent_with_key)
    now = timezone.now()
    # No service makes one (execution_create refuses): written by hand, as a bug would.
    forged = Execution.objects.create(
        proposal=check,
        status=ExecutionStatus.QUEUED,
        idempotency_key="forged",
        created_at=now,
        queued_at=now,
        updated_at=now,
    )

    assert services.execution_claim(execution_id=forged.id) is None
    assert tasks.run_execution(str(forged.id)) in (None, "failed")
    forged.refresh_from_db()
    assert forged.status == ExecutionStatus.FAILED and forged.attempts == 0
    assert not ConnectorCall.objects.exists()


def test_a_check_on_an_open_cards_target_takes_a_target_of_its_own(
    agent_with_key: factories.AgentWithKey,
) -> None:
    model = factories.proposal(agent_with_key, target="ws-0142.corp.example")

    check = services.attention_check_insert(
        team=None, model=model, flaw=CheckFlaw.OTHER_HOST, rng=random.Random(3)
    )

    assert check is not None and check.target_canonical != model.target_canonical
    assert AttentionCheck.objects.get(proposal=check).flaw == CheckFlaw.WRONG_KIND


def test_no_agent_sees_a_check_in_its_api(
    agent_with_key: factories.AgentWithKey, analyst: User
) -> None:
    check = _check(agent_with_key)
    agent_api = APIClient()
    agent_api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_with_key.raw_key}")

    listed = agent_api.get("/api/v1/proposals/").json()["results"]
    assert str(check.id) not in {p["id"] for p in listed}
    assert agent_api.get(f"/api/v1/proposals/{check.id}/").status_code == 404

    bot = APIClient()
    bot.force_authenticate(analyst)
    answer = bot.post(
        f"/api/v1/proposals/{check.id}/decisions/", {"verdict": "approve"}, format="json"
    )
    assert answer.status_code == 409
    assert answer.json()["code"] == "attention_check"


def test_a_team_gets_one_check_per_n_decisions_and_one_open_at_a_time(
    agent_with_key: factories.AgentWithKey, analyst: User, analyst2: User
) -> None:
    team = Team.objects.create(name="night", attention_checks=True, check_every=5)
    team.members.add(analyst)
    for n in range(4):
        p = factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example")
        services.proposal_reject(proposal_id=p.id, analyst=analyst, reason="benign")
    # Not a member: their decisions do not count towards the team's rate.
    p = factories.proposal(agent_with_key, target="ws-0100.corp.example")
    services.proposal_reject(proposal_id=p.id, analyst=analyst2, reason="benign")
    factories.proposal(agent_with_key, target="ws-0200.corp.example")  # a model to copy

    assert services.attention_checks_insert() == 0
    p = factories.proposal(agent_with_key, target="ws-0004.corp.example")
    services.proposal_reject(proposal_id=p.id, analyst=analyst, reason="benign")
    assert services.attention_checks_insert() == 1
    [row] = AttentionCheck.objects.all()
    assert row.team == team and row.outcome == CheckOutcome.OPEN
    # The count starts again from the check, and one is open: nothing more.
    for n in range(5, 11):
        p = factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example")
        services.proposal_reject(proposal_id=p.id, analyst=analyst, reason="benign")
    assert services.attention_checks_insert() == 0
    services.proposal_reject(proposal_id=row.proposal_id, analyst=analyst, reason="wrong host")
    assert services.attention_checks_insert() == 1

    off = Team.objects.create(name="day", attention_checks=False, check_every=5)
    off.members.add(analyst2)
    assert AttentionCheck.objects.filter(team=off).count() == 0


def test_an_unanswered_check_expires_as_neither_caught_nor_missed(
    agent_with_key: factories.AgentWithKey,
) -> None:
    check = _check(agent_with_key)
    Proposal.objects.filter(pk=check.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1),
        escalate_at=timezone.now() - timedelta(seconds=1),
    )

    report = services.sweep()

    assert report.escalated == 0  # a check is never escalated to the seniors
    assert AttentionCheck.objects.get(proposal=check).outcome == CheckOutcome.EXPIRED
    expired = AuditEvent.objects.get(proposal_id=check.id, event_type="proposal.expired")
    assert expired.data["synthetic"] is True


def test_a_manager_sets_a_team_up_in_the_admin_and_it_is_on_record(
    manager: User, analyst: User
) -> None:
    User.objects.filter(pk=manager.pk).update(is_staff=True)
    client = Client()
    client.force_login(manager)
    form = {"name": "night", "members": [analyst.pk], "attention_checks": "on"}

    refused = client.post("/admin/approvals/team/add/", {**form, "check_every": "2"})
    assert refused.status_code == 200 and not Team.objects.exists()  # at least 5

    saved = client.post("/admin/approvals/team/add/", {**form, "check_every": "20"})

    assert saved.status_code == 302
    team = Team.objects.get()
    assert (team.attention_checks, team.check_every) == (True, 20)
    event = AuditEvent.objects.get(event_type="team.created")
    assert event.actor == manager.username
    assert event.data["members"] == [analyst.username] and event.data["check_every"] == 20


def test_an_analyst_cannot_change_teams(analyst: User) -> None:
    User.objects.filter(pk=analyst.pk).update(is_staff=True)
    client = Client()
    client.force_login(analyst)

    answer = client.post("/admin/approvals/team/add/", {"name": "mine", "check_every": "5"})

    assert answer.status_code == 403 and not Team.objects.exists()


STEPS = st.lists(
    st.sampled_from(["approve", "reject", "bulk_approve", "bulk_reject", "expire", "sweep"]),
    min_size=1,
    max_size=4,
)


@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=STEPS)
def test_no_way_of_deciding_a_check_ever_runs_it(
    steps: list[str], agent_with_key: factories.AgentWithKey, analyst: User, analyst2: User
) -> None:
    check = _check(agent_with_key)
    first = None
    for index, step in enumerate(steps):
        who = (analyst, analyst2)[index % 2]
        try:
            if step == "approve":
                services.proposal_approve(proposal_id=check.id, analyst=who)
            elif step == "reject":
                services.proposal_reject(proposal_id=check.id, analyst=who, reason="wrong host")
            elif step.startswith("bulk_"):
                services.proposals_decide_bulk(
                    proposal_ids=[str(check.id)],
                    analyst=who,
                    verdict=step.removeprefix("bulk_"),
                    reason="seen",
                )
            elif step == "expire":
                Proposal.objects.filter(pk=check.pk).update(
                    expires_at=timezone.now() - timedelta(seconds=1)
                )
            else:
                services.sweep()
        except DomainError:
            pass
        outcome = AttentionCheck.objects.get(proposal=check).outcome
        first = first or (outcome if outcome != CheckOutcome.OPEN else None)
        # Once settled, a check stays as it was settled.
        assert outcome == (first or CheckOutcome.OPEN)

    check.refresh_from_db()
    assert check.status not in ("approved", "auto_approved")
    assert not Execution.objects.filter(proposal=check).exists()
    assert not ConnectorCall.objects.exists()


def test_the_checks_agent_cannot_be_suspended_or_cleared(
    agent_with_key: factories.AgentWithKey, senior: User, signed_in: Callable[[User], Client]
) -> None:
    check = _check(agent_with_key)
    client = signed_in(senior)

    suspend = client.post(f"/agents/{CHECKS_AGENT}/suspend/", {"suspend": "1", "reason": "x" * 5})
    clear = client.post(f"/agents/{CHECKS_AGENT}/clear/", {"reason": "clearing"})

    assert (suspend.status_code, clear.status_code) == (404, 404)
    assert not Agent.objects.get(slug=CHECKS_AGENT).suspended
    assert AttentionCheck.objects.get(proposal=check).outcome == CheckOutcome.OPEN


def test_the_checks_agent_has_no_page_and_no_shadow_policy(
    agent_with_key: factories.AgentWithKey, manager: User, signed_in: Callable[[User], Client]
) -> None:
    # A manager guessing its slug: its readiness page had no policy to read (a 500), and its
    # shadow page would have let a policy be started for the agent that owns every check.
    _check(agent_with_key)
    client = signed_in(manager)

    pages = [client.get(f"/agents/{CHECKS_AGENT}/"), client.get(f"/agents/{CHECKS_AGENT}/shadow/")]
    start = client.post(
        f"/agents/{CHECKS_AGENT}/shadow/start/",
        {"level_block_ip": "3", "auto_threshold": "0.5", "review_threshold": "0.1"},
    )

    assert [page.status_code for page in pages] == [404, 404]
    assert start.status_code == 404
    assert not Agent.objects.get(slug=CHECKS_AGENT).policies.exists()
    # The agent the check imitates keeps both pages.
    assert client.get(f"/agents/{agent_with_key.agent.slug}/").status_code == 200
    assert client.get(f"/agents/{agent_with_key.agent.slug}/shadow/").status_code == 200
