"""Clearing an agent's pending proposals says what it does, whoever clears: each is withdrawn
on the agent's behalf with a reason, nobody's decision, and the button, the message, the audit
log and the reports all say so."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from approvals import services
from approvals.models import Decision, Proposal, ProposalStatus
from audit import reports
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

CLEARERS = ["senior", "manager", "admin"]


@pytest.fixture
def admin(db: None) -> User:
    return factories.user("ada", factories.ADMIN)


def _bot_with_pending(n: int) -> tuple[factories.AgentWithKey, list[Proposal]]:
    bot = factories.agent("attacker-bot", grants={"isolate_host": 2})
    return bot, [factories.proposal(bot, target=f"ws-{i:04d}.corp.example") for i in range(n)]


def _text(response) -> str:  # noqa: ANN001
    return html.unescape(re.sub(r"\s+", " ", response.content.decode()))


def _clear_button(page: str) -> str:
    form = page.split('class="clear-agent"', 1)[1].split("</form>", 1)[0]
    button = form.split("<button", 1)[1].split(">", 1)[1].split("</button>", 1)[0]
    return re.sub(r"<[^>]+>", "", button).strip()


@pytest.mark.parametrize("role", CLEARERS)
def test_the_agents_page_offers_a_withdrawal_for_the_agent(
    role: str, request: pytest.FixtureRequest
) -> None:
    _bot_with_pending(3)
    browser = Client()
    browser.force_login(request.getfixturevalue(role))
    page = _text(browser.get("/agents/"))
    assert _clear_button(page) == "Withdraw all 3 pending for the agent"
    assert "Reject all 3" not in page
    assert "withdrawn on attacker-bot's behalf, by you, with this reason" in page
    assert "none counts as an analyst's decision: no demotion rule fires" in page


@pytest.mark.parametrize("role", CLEARERS)
def test_a_clearing_is_told_and_recorded_as_a_withdrawal_on_the_agents_behalf(
    role: str, request: pytest.FixtureRequest, manager: User
) -> None:
    clearer = request.getfixturevalue(role)
    _bot_with_pending(2)
    browser = Client()
    browser.force_login(clearer)
    answer = browser.post(
        "/agents/attacker-bot/clear/",
        {"reason": "contained at the firewall"},
        HTTP_HX_REQUEST="true",
    )
    said = _text(answer)
    assert (
        "2 pending proposals of attacker-bot cleared: withdrawn on the agent's behalf by you, "
        "with your reason; no analyst decided them." in said
    )
    assert set(Proposal.objects.values_list("status", flat=True)) == {ProposalStatus.WITHDRAWN}
    assert not Decision.objects.exists()
    withdrawn = AuditEvent.objects.filter(event_type="proposal.withdrawn")
    assert {(e.actor, e.actor_type) for e in withdrawn} == {(clearer.username, "user")}
    assert {e.data["reason"] for e in withdrawn} == {"contained at the firewall"}
    assert {e.data["on_behalf_of"] for e in withdrawn} == {"attacker-bot"}
    # The audit page's words for the event do not say the agent did it.
    browser.force_login(manager)
    audit = _text(browser.get("/audit/", {"event_type": "proposal.withdrawn"}))
    assert "withdrawn by the agent" not in audit
    assert "Proposal withdrawn before a decision (by the agent, or for it)" in audit


def test_the_queues_notice_has_one_button_for_every_clearer(senior: User, analyst: User) -> None:
    bot, _ = _bot_with_pending(1)
    services.agent_suspend(agent=bot.agent, by=senior, reason="flooding the queue")
    browser = Client()
    browser.force_login(analyst)
    page = browser.get("/").content.decode()
    notice = page.split('id="suspended-notice"', 1)[1]
    assert _clear_button(notice) == "Withdraw all 1 of attacker-bot for the agent"
    assert 'data-can-clear="false"' in page  # the stylesheet hides the form from an analyst


def test_the_reports_count_a_clearing_as_withdrawn_not_decided(senior: User) -> None:
    """A senior's clearing and an agent's own withdrawal are one population, named and defined
    as both: never "withdrawn by the agent", and never analysts' decisions."""
    bot, pending = _bot_with_pending(3)
    services.proposal_withdraw(proposal_id=pending[0].pk, agent=bot.agent)
    report = services.agent_pending_clear(agent=bot.agent, by=senior, reason="contained")
    assert report.cleared == 2 and report.refused == {}
    latency = reports.latency(reports.Filters.default())
    rows = [row for table in latency.tables for row in table.rows]
    assert [reports.WITHDRAWN, 3, ""] in rows
    assert [reports.DECIDED, 0, ""] in rows
    assert reports.WITHDRAWN == "withdrawn before a decision"
    definition = dict(latency.definitions)[reports.WITHDRAWN]
    assert "by the agent itself, or on its behalf by a senior analyst" in definition
    assert all("withdrawn by the agent" not in text for text in reports.DEFINITIONS.values())
    by_actor = {
        e.actor_type
        for e in AuditEvent.objects.filter(
            event_type="proposal.withdrawn", proposal_id__in=[p.pk for p in pending]
        )
    }
    assert by_actor == {"agent", "user"}  # the audit event's actor tells them apart
