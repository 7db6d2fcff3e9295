"""A queue the analyst can shape (issue 13): several cards decided at once, duplicates shown as
one card, cards waiting for a senior out of the way, filters that keep the live updates."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from agents.client import AgentClient
from agents.models import Criticality
from approvals import services
from approvals.models import ConnectorCall, Decision, Execution, Proposal
from tests import factories
from tests.browser.proposing import propose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms: a change reaches every open console within two seconds


def test_bulk_approval_with_a_critical_card_approves_the_rest_and_refuses_that_one(
    console: Callable[[User], Any],
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    plain = [
        factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example") for n in range(3)
    ]
    critical = factories.proposal(agent_with_key, target="dc01.corp.example")
    # Bob gave the critical asset its first approval: the final one must come from a senior.
    services.proposal_approve(proposal_id=critical.id, analyst=analyst2)

    page = console(analyst)
    for proposal in [*plain, critical]:
        page.locator(f"#card-{proposal.id} input.pick").check()
    expect(page.locator("#bulk-form .bulk-count")).to_have_text("4 selected")
    page.fill("#bulk-reason", "confirmed with the desktop team")
    page.locator("#bulk-form button.bulk-approve").click()

    summary = page.locator("#flash .bulk-summary")
    expect(summary).to_contain_text("Approved 3 of 4.")
    expect(summary).to_contain_text("Refused 1:")
    expect(summary.locator(f'li[data-proposal="{critical.id}"]')).to_contain_text(
        "Isolate host dc01.corp.example: This proposal targets a critical asset: the final "
        "approval must come from a senior analyst."
    )
    for proposal in plain:
        expect(page.locator(f"#card-{proposal.id}")).to_have_count(0, timeout=LIVE)
    expect(page.locator(f"#card-{critical.id}")).to_be_visible()
    # What was refused stays selected, beside its reason.
    expect(page.locator(f"#card-{critical.id} input.pick")).to_be_checked()
    assert set(
        Proposal.objects.filter(pk__in=[p.pk for p in plain]).values_list("status", flat=True)
    ) == {"approved"}
    critical.refresh_from_db()
    assert critical.status == "pending" and critical.approvals == 1
    reasons = Decision.objects.filter(proposal__in=plain).values_list("reason", flat=True)
    assert list(reasons) == ["confirmed with the desktop team"] * 3


def test_nine_duplicates_show_as_one_card_and_approved_run_the_connector_once(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
    worker: Any,
) -> None:
    page = console(analyst)
    ids = []
    with AgentClient(live_server_url, agent_with_key.raw_key) as client:
        for n in range(9):
            result = client.propose(
                action="isolate_host",
                # Three spellings of one host: one canonical target.
                target=[
                    "web-prod03.corp.example",
                    "WEB-PROD03.corp.example.",
                    "Web-Prod03.Corp.Example",
                ][n % 3],
                confidence=0.6 + n / 100,
                rationale=f"Beacon seen by sensor {n}.",
                evidence=[{"kind": "alert", "ref": f"SIEM-{n}"}],
                severity="high",
            )
            assert result.status == 201, result.body
            ids.append(str(result.body["id"]))

    shown = page.locator("#queue-cards > .card:visible")
    expect(shown).to_have_count(1, timeout=LIVE)
    expect(page.locator("#queue-cards > .card")).to_have_count(9)
    card = shown.first
    expect(card.locator(".group-head")).to_contain_text("9 proposals", timeout=LIVE)
    expect(card.locator(".group-agents")).to_contain_text("Beacon seen by sensor 8.")
    card.locator("button.group-approve").click()

    expect(page.locator("#flash .bulk-summary")).to_contain_text("Approved 9 of 9.")
    expect(page.locator("#queue-cards > .card")).to_have_count(0, timeout=LIVE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if Execution.objects.filter(proposal_id__in=ids, status="succeeded").count() == 9:
            break
        time.sleep(0.2)
    assert Execution.objects.filter(proposal_id__in=ids, status="succeeded").count() == 9
    assert Decision.objects.filter(proposal_id__in=ids, verdict="approve").count() == 9
    # The connector's ledger: one isolation; the other eight found it in place.
    assert ConnectorCall.objects.filter(operation="isolate_host").count() == 1
    results = Execution.objects.filter(proposal_id__in=ids).values_list("result", flat=True)
    assert sum(1 for r in results if r.get("already_in_place")) == 8


def test_where_the_next_approval_must_be_a_seniors_others_are_offered_no_approve(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    analyst2: User,
    senior: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    """On the card and on the proposal's page, an analyst who is not senior sees the rule, no
    Approve button the server would refuse, and a key that says so and decides nothing; they
    may still reject, and a senior analyst sees Approve."""
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    critical = factories.proposal(agent_with_key, target="dc01.corp.example")
    services.proposal_approve(proposal_id=critical.id, analyst=analyst2)

    alice = console(analyst)
    card = alice.locator(f"#card-{critical.id}")
    expect(card.locator("button.approve")).to_be_hidden()
    expect(card.locator("button.reject")).to_be_visible()
    alice.goto(f"{live_server_url}/proposals/{critical.id}/")
    panel = alice.locator(".decide-panel")
    expect(panel).to_contain_text(
        "Two-person rule: the next approval must come from a senior analyst."
    )
    expect(panel.locator("button.approve")).to_be_hidden()
    expect(panel.locator("button.reject")).to_be_visible()
    time.sleep(0.4)  # the panel has been on screen long enough for a key to act
    alice.keyboard.press("a")
    expect(alice.locator("#flash")).to_contain_text(
        "Not approved: the next approval must come from a senior analyst."
    )
    time.sleep(0.5)
    critical.refresh_from_db()
    assert critical.status == "pending" and critical.approvals == 1
    assert Decision.objects.filter(proposal=critical).count() == 1

    sam = console(senior)
    sam.goto(f"{live_server_url}/proposals/{critical.id}/")
    expect(sam.locator(".decide-panel button.approve")).to_be_visible()

    # A page opened before the first approval learns of it live: Approve goes from it.
    factories.asset("dc02.corp.example", criticality=Criticality.CRITICAL)
    second = factories.proposal(agent_with_key, target="dc02.corp.example")
    alice.goto(f"{live_server_url}/proposals/{second.id}/")
    alice.wait_for_selector("#live-status.ok")
    expect(alice.locator(".decide-panel button.approve")).to_be_visible()
    services.proposal_approve(proposal_id=second.id, analyst=analyst2)
    expect(alice.locator(".decide-panel button.approve")).to_be_hidden(timeout=LIVE)
    expect(alice.locator(".decide-panel button.reject")).to_be_visible()

    # A duplicate group whose proposals each wait for a senior: no "Approve all" for others.
    factories.asset("dc03.corp.example", criticality=Criticality.CRITICAL)
    pair = [factories.proposal(agent_with_key, target="dc03.corp.example") for _ in range(2)]
    for member in pair:
        services.proposal_approve(proposal_id=member.id, analyst=analyst2)
    shown = ", ".join(f"#card-{member.id}:visible" for member in pair)
    for page, offered in ((alice, False), (sam, True)):
        page.goto(f"{live_server_url}/")
        page.wait_for_selector("#live-status.ok")
        lead = page.locator(shown)
        expect(lead).to_have_count(1)  # one card for the group
        expect(lead.locator("button.group-reject")).to_be_visible()
        approve_all = expect(lead.locator("button.group-approve"))
        if offered:
            approve_all.to_be_visible()
        else:
            approve_all.to_be_hidden()


def test_a_card_the_analyst_approved_that_waits_for_a_senior_moves_out_of_their_way(
    console: Callable[[User], Any],
    analyst: User,
    senior: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    critical = factories.proposal(agent_with_key, target="dc01.corp.example")
    others = [
        factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example") for n in range(2)
    ]
    page = console(analyst)
    sam = console(senior)
    first = page.locator("#queue-cards > .card").first
    expect(first).to_have_id(f"card-{critical.id}")  # the critical asset comes first

    page.locator(f"#card-{critical.id} button.approve").click()
    expect(page.locator("#flash")).to_contain_text("it now needs a senior analyst")
    waiting = page.locator("#queue-waiting")
    expect(waiting).to_be_visible()
    mine = page.locator(f"#card-{critical.id}")
    expect(mine).to_have_class(re.compile(r"\bmine\b"))
    expect(mine).to_contain_text("You approved this one; it now waits for a senior analyst.")

    def top(locator: Any) -> float:
        return float(locator.bounding_box()["y"])

    # Below the cards alice can still act on, and below the heading that says why.
    for other in others:
        assert top(page.locator(f"#card-{other.id}")) < top(waiting) < top(mine)
    # The next card took its place as the selected one.
    expect(page.locator("#queue-cards > .card.selected")).to_have_id(f"card-{others[0].id}")
    # Still where it was for the senior who must decide it.
    expect(sam.locator(f"#card-{critical.id}")).to_contain_text("1 of 2", timeout=LIVE)
    expect(sam.locator("#queue-waiting")).to_be_hidden()
    assert top(sam.locator(f"#card-{critical.id}")) < top(sam.locator(f"#card-{others[0].id}"))


def test_a_filtered_console_shows_live_only_the_cards_inside_its_filter(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    storm = factories.agent("storm-bot", grants={"isolate_host": 2})
    before = factories.proposal(storm, target="ws-0100.corp.example")
    calm = factories.proposal(agent_with_key, target="ws-0200.corp.example")
    alice, bob = console(analyst), console(analyst2)

    alice.select_option("#queue-filter select[name=agent]", "storm-bot")
    expect(alice.locator(f"#card-{calm.id}")).to_be_hidden()
    expect(alice.locator(f"#card-{before.id}")).to_be_visible()
    expect(alice.locator("#queue-filter .filter-shown")).to_have_text("1 shown")
    assert alice.url.endswith("/?agent=storm-bot")

    new_storm = _propose(live_server_url, storm, "ws-0101.corp.example")
    new_calm = _propose(live_server_url, agent_with_key, "ws-0201.corp.example")
    # Bob, unfiltered, sees both; alice only the storm's, live, without a reload.
    expect(bob.locator(f"#card-{new_storm}")).to_be_visible(timeout=LIVE)
    expect(bob.locator(f"#card-{new_calm}")).to_be_visible(timeout=LIVE)
    expect(alice.locator(f"#card-{new_storm}")).to_be_visible(timeout=LIVE)
    expect(alice.locator(f"#card-{new_calm}")).to_be_hidden()
    expect(alice.locator("#queue-cards > .card:visible")).to_have_count(2)
    assert alice.evaluate("window.__sameDocument") is True

    # The whole agent, in one action: all shown, rejected with one reason.
    alice.locator("#bulk-form button.bulk-all").click()
    expect(alice.locator("#bulk-form .bulk-count")).to_have_text("2 selected")
    alice.fill("#bulk-reason", "storm from a misconfigured agent")
    alice.locator("#bulk-form button.bulk-reject").click()
    expect(alice.locator("#flash .bulk-summary")).to_contain_text("Rejected 2 of 2.")
    expect(bob.locator(f"#card-{new_storm}")).to_have_count(0, timeout=LIVE)
    expect(bob.locator(f"#card-{new_calm}")).to_be_visible()
    assert set(Proposal.objects.filter(agent=storm.agent).values_list("status", flat=True)) == {
        "rejected"
    }
    assert Proposal.objects.get(pk=new_calm).status == "pending"

    # A reload keeps the filter; clearing it shows everything again.
    alice.reload()
    alice.wait_for_selector("#live-status.ok")
    expect(alice.locator("#queue-filter select[name=agent]")).to_have_value("storm-bot")
    expect(alice.locator("#queue-cards > .card:visible")).to_have_count(0)
    alice.select_option("#queue-filter select[name=agent]", "")
    expect(alice.locator(f"#card-{new_calm}")).to_be_visible(timeout=LIVE)
    expect(alice.locator(f"#card-{calm.id}")).to_be_visible()


_propose = partial(propose, confidence=0.74)


def test_a_group_is_led_by_a_card_the_analyst_can_still_act_on(
    console: Callable[[User], Any],
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    # Reported: after a first approval of one card of a duplicate group, that card (now
    # waiting for a senior) led the group and hid a copy nobody had approved yet.
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    twins = [
        factories.proposal(agent_with_key, target="dc01.corp.example", confidence=c)
        for c in (0.81, 0.79)
    ]
    page = console(analyst)
    lead = page.locator("#queue-cards > .card.group-lead")
    expect(lead).to_have_count(1)
    approved = lead.get_attribute("data-id")
    other = next(str(p.id) for p in twins if str(p.id) != approved)
    time.sleep(0.4)
    page.locator(f"#card-{approved} button.approve").click()
    expect(page.locator("#flash")).to_contain_text("it now needs a senior analyst")

    # The copy alice has not approved now stands for the group, with its buttons.
    expect(page.locator(f"#card-{other}")).to_be_visible(timeout=LIVE)
    expect(page.locator(f"#card-{other}")).not_to_have_class(re.compile(r"\bgrouped\b"))
    expect(page.locator(f"#card-{other} button.approve")).to_be_visible()
    expect(page.locator(f"#card-{approved}")).to_have_class(re.compile(r"\bgrouped\b"))
    assert Proposal.objects.get(pk=approved).approvals == 1
    assert Proposal.objects.get(pk=other).approvals == 0
