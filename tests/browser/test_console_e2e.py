"""Analysts working the live queue in a real browser, as DESIGN §8 describes it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from agents.models import Criticality, EmergencyStop
from approvals.models import Proposal
from tests import factories
from tests.browser.proposing import propose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms: a change must reach every open console within two seconds


_propose = partial(propose, confidence=0.74, expect="pending")


def test_card_reaches_two_analysts_and_leaves_the_other_when_one_approves(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    alice, bob = console(analyst), console(analyst2)
    expect(alice.locator("#queue-empty")).to_be_visible()

    proposal_id = _propose(live_server_url, agent_with_key, "ws-0142.corp.example")
    posted = time.monotonic()
    for page in (alice, bob):
        card = page.locator(f"#card-{proposal_id}")
        expect(card).to_be_visible(timeout=LIVE)
        expect(card).to_contain_text("Isolate host")
        expect(card).to_contain_text("ws-0142.corp.example")
        expect(card).to_contain_text("Beaconing to a domain registered yesterday.")
        expect(page.locator('[data-count="pending"]')).to_have_text("1")
        expect(page.locator("#queue-empty")).to_be_hidden()
    assert time.monotonic() - posted < LIVE / 1000

    # Bob sees that Alice is on it.
    alice.locator(f"#card-{proposal_id} .effect").click()
    expect(bob.locator(f"#reviewing-{proposal_id}")).to_have_text(
        "being reviewed by alice", timeout=LIVE
    )
    expect(alice.locator(f"#reviewing-{proposal_id}")).to_have_text("")

    alice.locator(f"#card-{proposal_id} button.approve").click()
    expect(alice.locator("#flash")).to_contain_text(
        "Approved: Isolate host ws-0142.corp.example. It is queued to run."
    )
    expect(bob.locator(f"#card-{proposal_id}")).to_have_count(0, timeout=LIVE)
    expect(alice.locator(f"#card-{proposal_id}")).to_have_count(0)
    expect(bob.locator('[data-count="pending"]')).to_have_text("0")
    expect(bob.locator("#queue-empty")).to_be_visible()
    assert bob.evaluate("window.__sameDocument") is True  # no reload happened
    proposal = Proposal.objects.get(pk=proposal_id)
    assert proposal.status == "approved"
    decision = proposal.decisions.get()
    assert decision.analyst == analyst and decision.seconds_on_card is not None


def test_reject_without_a_reason_is_refused_then_works_with_one(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    alice = console(analyst)
    proposal_id = _propose(live_server_url, agent_with_key, "ws-0217.corp.example")
    card = alice.locator(f"#card-{proposal_id}")
    expect(card).to_be_visible(timeout=LIVE)

    card.locator("button.reject").click()
    # The server's rule and its words; the page puts the cursor where the reason goes.
    expect(alice.locator("#flash")).to_contain_text("A rejection needs a reason")
    expect(card.locator("input.reason")).to_be_focused()
    expect(card.locator("input.reason")).to_have_attribute("aria-invalid", "true")
    expect(card).to_be_visible()
    assert Proposal.objects.get(pk=proposal_id).status == "pending"

    # The keyboard path: type the reason, Tab to the Reject button, press it.
    card.locator("input.reason").fill("Known vulnerability scanner, allow-listed")
    card.locator("input.reason").press("Tab")
    expect(card.locator("button.reject")).to_be_focused()
    alice.keyboard.press("Enter")
    expect(alice.locator("#flash")).to_contain_text("Rejected: Isolate host ws-0217.corp.example.")
    expect(card).to_have_count(0, timeout=LIVE)
    proposal = Proposal.objects.get(pk=proposal_id)
    assert proposal.status == "rejected"
    assert proposal.decisions.get().reason == "Known vulnerability scanner, allow-listed"


def test_keyboard_moves_and_approves(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    factories.asset("web-prod03.corp.example", criticality=Criticality.HIGH)
    # Inventoried: a target outside the inventory would be high too (it fails closed).
    factories.asset("ws-0311.corp.example", criticality=Criticality.LOW)
    low = _propose(live_server_url, agent_with_key, "ws-0311.corp.example", confidence=0.6)
    high = _propose(live_server_url, agent_with_key, "web-prod03.corp.example", confidence=0.6)
    alice = console(analyst)
    ids = alice.eval_on_selector_all(
        "#queue-cards > .card", "cards => cards.map(c => c.dataset.id)"
    )
    assert ids == [high, low]  # priority order: the high-criticality asset first
    expect(alice.locator(f"#card-{high}")).to_have_class(re.compile(r"\bselected\b"))

    alice.keyboard.press("j")
    expect(alice.locator(f"#card-{low}")).to_be_focused()
    time.sleep(0.4)  # a key acts on a card selected (and still) for 300 ms: the analyst reads it
    alice.keyboard.press("a")
    expect(alice.locator(f"#card-{low}")).to_have_count(0, timeout=LIVE)
    # The remaining card takes the selection; the next key acts on it once it has been still
    # for a moment.
    expect(alice.locator(f"#card-{high}")).to_have_class(re.compile(r"\bselected\b"))
    assert Proposal.objects.get(pk=low).status == "approved"
    assert Proposal.objects.get(pk=high).status == "pending"


def test_the_next_card_takes_the_selection_when_the_live_update_beats_the_answer(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    """The decision's own live update usually arrives after its answer; when it comes first
    it removes the card, and with it the form the answer is addressed to: the answer is read
    all the same, and the next card takes the selection."""
    factories.asset("web-prod03.corp.example", criticality=Criticality.HIGH)
    factories.asset("ws-0311.corp.example", criticality=Criticality.LOW)
    low = _propose(live_server_url, agent_with_key, "ws-0311.corp.example", confidence=0.6)
    high = _propose(live_server_url, agent_with_key, "web-prod03.corp.example", confidence=0.6)
    alice = console(analyst)
    expect(alice.locator(f"#card-{high}")).to_have_class(re.compile(r"\bselected\b"))

    held: list[Any] = []
    delivered: list[bool] = []

    def hold_the_answer(route: Any) -> None:
        response = route.fetch()  # the server decides and broadcasts now
        held.append(response)
        # The card leaves through the websocket while the answer is held back.
        expect(alice.locator(f"#card-{high}")).to_have_count(0, timeout=LIVE)
        route.fulfill(response=response)
        delivered.append(True)

    alice.route(f"**/proposals/{high}/decide/", hold_the_answer)
    time.sleep(0.4)  # a key acts on a card selected (and still) for 300 ms
    alice.keyboard.press("a")
    expect(alice.locator(f"#card-{low}")).to_have_class(re.compile(r"\bselected\b"), timeout=LIVE)
    # The held answer is delivered before the page goes away (a route still running when
    # the test ends would fail whatever runs next).
    deadline = time.monotonic() + LIVE / 1000
    while not delivered and time.monotonic() < deadline:
        alice.wait_for_timeout(50)
    assert delivered and held[0].status == 200
    expect(alice.locator(f"#card-{low}")).to_have_class(re.compile(r"\bselected\b"))
    assert Proposal.objects.get(pk=high).status == "approved"
    assert Proposal.objects.get(pk=low).status == "pending"


def test_emergency_stop_banner_appears_live_for_an_analyst(
    console: Callable[[User], Any], analyst: User, manager: User
) -> None:
    alice, maya = console(analyst), console(manager)
    expect(alice.locator(".stop-banner")).to_have_count(0)
    assert alice.locator("#stop-control").count() == 0  # analysts get no stop button

    maya.locator("#stop-control summary").click()
    maya.fill("#stop-reason", "triage-bot is isolating the whole finance floor")
    maya.locator("#stop-control button.danger").click()

    banner = alice.locator(".stop-banner")
    expect(banner).to_be_visible(timeout=LIVE)
    expect(banner).to_contain_text("EMERGENCY STOP ENGAGED by maya")
    expect(banner).to_contain_text("triage-bot is isolating the whole finance floor")
    expect(maya.locator("#stop-control summary")).to_have_text("Lift emergency stop")
    assert alice.evaluate("window.__sameDocument") is True
    assert EmergencyStop.objects.get(id=1).engaged

    maya.locator("#stop-control summary").click()
    maya.locator("#stop-control button.primary").click()
    expect(banner).to_have_count(0, timeout=LIVE)


def test_critical_asset_needs_an_analyst_then_a_senior(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    analyst2: User,
    senior: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    alice, bob, sam = console(analyst), console(analyst2), console(senior)
    proposal_id = _propose(live_server_url, agent_with_key, "dc01.corp.example")
    for page in (alice, bob, sam):
        expect(page.locator(f"#card-{proposal_id}")).to_contain_text("0 of 2", timeout=LIVE)

    alice.locator(f"#card-{proposal_id} button.approve").click()
    expect(alice.locator("#flash")).to_contain_text("recorded (1 of 2); it now needs a senior")
    for page in (alice, bob, sam):
        card = page.locator(f"#card-{proposal_id}")
        expect(card).to_contain_text("1 of 2", timeout=LIVE)
        expect(card).to_contain_text("approved by alice")
    # Alice's own copy no longer offers buttons the server would refuse.
    expect(alice.locator(f"#card-{proposal_id} button.approve")).to_be_hidden()
    expect(alice.locator(f"#card-{proposal_id}")).to_contain_text("You approved this one")

    # A plain analyst is not offered the final approval; the card says who must give it, and
    # the server would refuse it anyway (tests/console cover the refusal).
    expect(bob.locator(f"#card-{proposal_id} button.approve")).to_be_hidden()
    expect(bob.locator(f"#card-{proposal_id} button.reject")).to_be_visible()
    assert Proposal.objects.get(pk=proposal_id).status == "pending"

    # The senior reads the whole proposal first, and approves from its page with the keyboard.
    sam.locator(f"#card-{proposal_id} a.details").click()
    sam.wait_for_url(f"{live_server_url}/proposals/{proposal_id}/")
    sam.wait_for_selector("#live-status.ok")
    expect(sam.locator(".decide-panel")).to_contain_text(
        "the next approval must come from a senior"
    )
    expect(sam.locator(f"#timeline-{proposal_id}")).to_contain_text("proposal.approval_recorded")
    time.sleep(0.4)  # the panel has been on screen, where it is, for 300 ms
    sam.keyboard.press("a")
    expect(sam.locator("#flash")).to_contain_text("Approved: Isolate host dc01.corp.example.")
    expect(sam.locator(f"#state-{proposal_id}")).to_contain_text("Approved", timeout=LIVE)
    expect(sam.locator(f"#state-{proposal_id}")).to_contain_text("2 of 2 approvals")
    expect(sam.locator(".decide-panel")).to_have_count(0, timeout=LIVE)
    expect(sam.locator(f"#decisions-{proposal_id} tbody tr")).to_have_count(2)
    expect(sam.locator(f"#timeline-{proposal_id}")).to_contain_text(
        "proposal.approved by sam", timeout=LIVE
    )
    for page in (alice, bob):
        expect(page.locator(f"#card-{proposal_id}")).to_have_count(0, timeout=LIVE)
    proposal = Proposal.objects.get(pk=proposal_id)
    assert proposal.status == "approved"
    assert [d.analyst.username for d in proposal.decisions.all()] == ["alice", "sam"]


def test_rollback_asks_first_and_nothing_happens_when_the_analyst_cancels(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    from approvals import services
    from approvals.models import Execution

    proposal_id = _propose(live_server_url, agent_with_key, "ws-0150.corp.example")
    services.proposal_approve(proposal_id=proposal_id, analyst=analyst)
    execution = Execution.objects.get(proposal_id=proposal_id)
    services.execution_run(execution_id=execution.id)  # the worker's part, in this process
    assert Execution.objects.get(pk=execution.id).status == "succeeded"

    alice = console(analyst)
    alice.goto(f"{live_server_url}/proposals/{proposal_id}/")
    alice.fill("#rb-reason", "The host was a false positive: the beacon is the backup agent.")
    asked: list[str] = []

    def cancel(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    alice.once("dialog", cancel)
    alice.locator("button.danger", has_text="Roll back").click()
    expect(alice.locator("#rb-reason")).to_be_visible()
    time.sleep(0.5)  # a request, had one gone, would have been answered by now
    assert asked and asked[0].startswith("Roll back Isolate host on ws-0150.corp.example?")
    assert Execution.objects.get(pk=execution.id).status == "succeeded"

    alice.once("dialog", lambda dialog: dialog.accept())
    alice.locator("button.danger", has_text="Roll back").click()
    expect(alice.locator("#flash")).to_contain_text("Rollback requested.", timeout=LIVE)
    assert Execution.objects.get(pk=execution.id).status == "rolling_back"


def test_held_list_offers_re_confirmation_as_soon_as_the_stop_is_lifted(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    manager: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    from approvals import services
    from approvals.models import Execution

    proposal_id = _propose(live_server_url, agent_with_key, "ws-0151.corp.example")
    services.emergency_stop_engage(by=manager, reason="Drill.")
    services.proposal_approve(proposal_id=proposal_id, analyst=analyst)
    execution = Execution.objects.get(proposal_id=proposal_id)
    assert Execution.objects.get(pk=execution.id).status == "held"  # approved during the stop

    alice = console(analyst)
    alice.goto(f"{live_server_url}/lists/")
    alice.wait_for_selector("#live-status.ok")
    alice.evaluate("window.__sameDocument = true")  # a reload would drop it
    held = alice.locator("#held-executions")
    expect(held).to_contain_text("ws-0151.corp.example")
    expect(held).to_contain_text("after the stop is lifted")
    expect(held.locator("button", has_text="Re-confirm")).to_have_count(0)

    services.emergency_stop_release(by=manager, reason="Drill over.")
    expect(held.locator("button", has_text="Re-confirm")).to_have_count(1, timeout=LIVE)
    expect(alice.locator("#held-executions")).not_to_contain_text("after the stop is lifted")
    assert alice.evaluate("window.__sameDocument") is True
