"""A storm from one agent: its circuit breaker trips long before the analysts drown, every
console shows it, and a senior analyst clears its cards in one action."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from agents.client import AgentClient
from agents.models import Agent
from approvals.models import Decision, Proposal, ProposalStatus
from audit.models import AuditEvent
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 5000  # ms


def test_a_300_proposal_storm_trips_the_breaker_and_is_cleared_in_one_action(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    senior: User,
) -> None:
    # The breaker's defaults: 50 open proposals, 30 a minute.
    storm = factories.agent("storm-bot", grants={"isolate_host": 2})
    alice, sam = console(analyst), console(senior)

    started = time.monotonic()
    statuses = []
    with AgentClient(live_server_url, storm.raw_key) as client:
        for n in range(300):
            result = client.propose(
                action="isolate_host",
                target=f"ws-{n:04d}.corp.example",
                confidence=0.74,
                rationale="Beaconing to a domain registered yesterday.",
                evidence=[{"kind": "alert", "ref": f"SIEM-{n}"}],
                severity="high",
            )
            statuses.append((result.status, result.body.get("code")))
    accepted = [s for s in statuses if s[0] == 201]
    assert 0 < len(accepted) < 100, len(accepted)
    # Everything after the proposal that tripped it is refused as a suspended agent's.
    tripped = len(accepted)
    assert statuses[:tripped] == [(201, None)] * tripped
    assert set(statuses[tripped:]) == {(403, "agent_suspended")}
    assert Agent.objects.get(slug="storm-bot").suspended
    assert AuditEvent.objects.filter(event_type="agent.suspended", actor="system").count() == 1

    # Every console shows it live: the notice over the queue and a badge on each card.
    for page in (alice, sam):
        expect(page.locator("#suspended-notice")).to_contain_text(
            "storm-bot is suspended", timeout=LIVE
        )
        expect(page.locator(".card .badge.suspended").first).to_be_visible(timeout=LIVE)
        expect(page.locator(".card:not(.agent-suspended)")).to_have_count(0, timeout=LIVE)
        expect(page.locator(".card button.approve").first).to_be_disabled()
    # The analyst is told why and is not offered the clearing; the senior analyst is.
    expect(alice.locator("#suspended-notice form.clear-agent")).to_be_hidden()
    notice = sam.locator("#suspended-notice form.clear-agent")
    expect(notice).to_be_visible()

    notice.locator("input[name=reason]").fill("storm from a misconfigured model")
    notice.locator("button").click()
    expect(sam.locator("#flash")).to_contain_text(
        f"{tripped} pending proposals of storm-bot cleared", timeout=LIVE * 4
    )
    for page in (alice, sam):
        expect(page.locator(".card")).to_have_count(0, timeout=LIVE)
        expect(page.locator("#queue-empty")).to_be_visible(timeout=LIVE)
        expect(page.locator("#suspended-notice")).not_to_contain_text("storm-bot", timeout=LIVE)
    contained = time.monotonic() - started

    assert not Proposal.objects.filter(status=ProposalStatus.PENDING).exists()
    withdrawn = Proposal.objects.filter(status=ProposalStatus.WITHDRAWN)
    assert withdrawn.count() == tripped
    assert not Decision.objects.exists()  # a clearing is nobody's decision
    cleared = AuditEvent.objects.filter(event_type="proposal.withdrawn", actor=senior.username)
    assert cleared.count() == tripped
    print(f"storm contained in {contained:.1f} s; {tripped} cards reached the queue")
