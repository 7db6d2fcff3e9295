"""No decision without intent: the console acts only on what the analyst meant to decide.

The first two tests replay, step by step, what analysts reported: typing that turned into
decisions when a card left under them, and Enter in the text box rejecting a card the analyst
meant to approve.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals import services
from approvals.models import Decision, Proposal
from tests import factories
from tests.browser.proposing import propose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms: a change reaches every open console within two seconds
# Long enough for a decision the page might have sent to be committed and visible here.
SETTLE = 1.5


@pytest.fixture
def identity_bot(db: None) -> factories.AgentWithKey:
    # Level 2: every proposal waits for an analyst.
    return factories.agent("identity-bot", grants={"disable_user": 2, "isolate_host": 2})


_propose = partial(
    propose,
    action="disable_user",
    confidence=0.74,
    rationale="Sign-ins from two countries within ten minutes.",
    evidence=[{"kind": "alert", "ref": "IDP-77"}],
    expect="pending",
)


def _focus_is_on_a_card(page: Any) -> bool:
    return bool(page.evaluate("!!document.activeElement.closest('.card')"))


def test_typing_while_another_analyst_approves_the_card_makes_no_decision(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    analyst2: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    # Finding 1: alice types a rejection reason ("this is a false "), bob approves that card
    # from his browser, and the rest of her sentence ("alarm") must not act on other cards.
    worked = _propose(live_server_url, identity_bot, "jdoe@corp.example")
    others = [
        _propose(live_server_url, identity_bot, f"{name}@corp.example")
        for name in ("asmith", "bwong", "cdiaz")
    ]
    alice, bob = console(analyst), console(analyst2)
    card = alice.locator(f"#card-{worked}")
    expect(card).to_have_class(re.compile(r"\bselected\b"))  # the top card
    card.locator("input.reason").click()
    alice.keyboard.type("this is a false ", delay=40)

    bob.locator(f"#card-{worked} button.approve").click()
    expect(card).to_have_count(0, timeout=LIVE)
    # She types on at a normal pace: the j of "just", the o of "so" and the a of "ask" would
    # select, open and approve if they were read as keys.
    alice.keyboard.type("alarm - just so you know, ask again", delay=60)
    time.sleep(SETTLE)

    assert not Decision.objects.filter(analyst=analyst).exists()
    assert [Proposal.objects.get(pk=pk).status for pk in others] == ["pending"] * 3
    assert Proposal.objects.get(pk=worked).status == "approved"
    # The selection stayed where it was: no other card took it, and the page says why.
    assert not _focus_is_on_a_card(alice)
    expect(alice.locator("#queue-cards > .card.selected")).to_have_count(0)
    notice = alice.locator(".card-left")
    expect(notice).to_contain_text("approved by bob")
    expect(notice).to_contain_text("select another card")
    expect(alice.locator("#flash")).to_contain_text("approved by bob")
    expect(alice.locator("#flash")).to_have_attribute("aria-live", "polite")
    # What she was typing is not lost with the card: the notice keeps it, to be copied, with
    # what she typed after, and she was on no other page.
    expect(notice.locator(".unsent")).to_have_text(
        "What you had typed, not sent: “this is a false alarm - just so you know, ask again”"
    )
    expect(notice).to_contain_text("Your keys go on into this note")
    assert alice.url == f"{live_server_url}/"
    alice.keyboard.press("Backspace")
    expect(notice.locator(".unsent")).to_contain_text("ask agai”")
    alice.keyboard.press("Escape")
    expect(alice.locator("#flash")).to_contain_text("Keys act again")
    expect(notice).not_to_contain_text("Your keys go on into this note")

    # The notice goes once she picks a card, without moving that card under her pointer: the
    # click on its Approve button is the click that approves it.
    alice.locator(f"#card-{others[0]} button.approve").click()
    expect(alice.locator("#flash")).to_contain_text("Approved: Disable user asmith@corp.example")
    expect(notice).to_have_count(0)
    assert Decision.objects.get(analyst=analyst).proposal_id == uuid.UUID(others[0])


def test_typing_in_a_groups_box_while_another_analyst_decides_the_group_makes_no_decision(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    analyst2: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    # The same for the box of a duplicate group's one decision: what she types on after the
    # group is decided goes into the kept note, and no key acts on the cards left.
    pair = [_propose(live_server_url, identity_bot, "dupe@corp.example") for _ in range(2)]
    others = [_propose(live_server_url, identity_bot, f"{n}@corp.example") for n in ("kim", "lee")]
    alice = console(analyst)
    box = alice.locator("#queue-cards > .card:visible .group-reason")
    expect(box).to_have_count(1)
    box.click()
    alice.keyboard.type("same alert twice ", delay=40)
    for member in pair:
        services.proposal_approve(proposal_id=member, analyst=analyst2)
    notice = alice.locator(".card-left")
    expect(notice).to_have_count(1, timeout=LIVE)
    alice.keyboard.type("- just so you know, ask again", delay=60)
    time.sleep(SETTLE)

    assert not Decision.objects.filter(analyst=analyst).exists()
    assert [Proposal.objects.get(pk=pk).status for pk in others] == ["pending"] * 2
    assert alice.url == f"{live_server_url}/"
    expect(notice.locator(".unsent")).to_have_text(
        "What you had typed, not sent: “same alert twice - just so you know, ask again”"
    )


def test_enter_in_the_text_box_with_an_approval_note_does_not_reject(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    # Finding 2: the analyst writes an approval note and presses Enter, as in any form.
    proposal_id = _propose(
        live_server_url, identity_bot, "web-prod03.corp.example", action="isolate_host"
    )
    alice = console(analyst)
    card = alice.locator(f"#card-{proposal_id}")
    box = card.locator("input.reason")
    box.click()
    alice.keyboard.type("confirmed with host owner, ok to approve", delay=10)
    alice.keyboard.press("Enter")
    time.sleep(SETTLE)

    proposal = Proposal.objects.get(pk=proposal_id)
    assert proposal.status == "pending"
    assert not proposal.decisions.exists()
    expect(alice.locator("#flash .flash.success")).to_have_count(0)
    expect(alice.locator("#flash")).not_to_contain_text("Rejected")
    expect(card).to_be_visible()
    expect(box).to_have_value("confirmed with host owner, ok to approve")
    expect(alice.locator("#flash")).to_contain_text("Enter does not decide")

    # The analyst meant to approve: the button does, and the note goes with the approval.
    card.locator("button.approve").click()
    expect(alice.locator("#flash")).to_contain_text("Approved: Isolate host web-prod03")
    decision = Decision.objects.get(proposal_id=proposal_id)
    assert decision.verdict == "approve"
    assert decision.reason == "confirmed with host owner, ok to approve"


def test_a_card_selected_less_than_300_ms_ago_is_not_decided_by_a(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    first = _propose(live_server_url, identity_bot, "dfox@corp.example")
    second = _propose(live_server_url, identity_bot, "egray@corp.example")
    alice = console(analyst)
    expect(alice.locator(f"#card-{first}")).to_have_class(re.compile(r"\bselected\b"))

    alice.keyboard.type("ja")  # move to the next card and approve it, in one motion
    expect(alice.locator(f"#card-{second}")).to_have_class(re.compile(r"\bselected\b"))
    expect(alice.locator("#flash")).to_contain_text("Not approved: this card was selected")
    time.sleep(SETTLE)
    assert not Decision.objects.exists()

    alice.keyboard.press("a")  # more than 300 ms later, on the card the analyst has read
    expect(alice.locator(f"#card-{second}")).to_have_count(0, timeout=LIVE)
    assert Proposal.objects.get(pk=second).status == "approved"
    assert Proposal.objects.get(pk=first).status == "pending"


def test_a_key_pressed_as_a_new_card_pushes_the_selected_one_down_decides_nothing(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    from agents.models import Criticality

    # Inventoried as low: outside the inventory a user is high, and the arriving card must
    # outrank it.
    factories.asset("fhall@corp.example", kind="user", criticality=Criticality.LOW)
    waiting = _propose(live_server_url, identity_bot, "fhall@corp.example")
    alice = console(analyst)
    card = alice.locator(f"#card-{waiting}")
    expect(card).to_have_class(re.compile(r"\bselected\b"))
    time.sleep(0.5)  # selected and still: a key would act on it now

    # The analyst presses a at the very moment a higher-priority card lands above it.
    factories.asset("hq-fw01.corp.example", criticality=Criticality.HIGH)
    # The key goes out the moment the selected card is no longer first: whenever the page
    # puts the new card above it (on the message, or when it orders the cards after).
    alice.evaluate(
        """(waiting) => {
          window.__pressed = false;
          var cards = document.getElementById("queue-cards");
          var observer = new MutationObserver(function () {
            var first = cards.querySelector(":scope > .card");
            if (!first || first.dataset.id === waiting) return;
            observer.disconnect();
            document.dispatchEvent(new KeyboardEvent("keydown", { key: "a", bubbles: true }));
            window.__pressed = true;
          });
          observer.observe(cards, { childList: true });
        }""",
        waiting,
    )
    arrived = _propose(live_server_url, identity_bot, "hq-fw01.corp.example", action="isolate_host")
    # Polled from here: wait_for_function evaluates its predicate with eval, which the
    # console's Content-Security-Policy refuses.
    deadline = time.monotonic() + LIVE / 1000
    while not alice.evaluate("() => window.__pressed === true"):
        assert time.monotonic() < deadline, "the new card never arrived"
        time.sleep(0.02)
    ids = alice.eval_on_selector_all("#queue-cards > .card", "cs => cs.map(c => c.dataset.id)")
    assert ids == [arrived, waiting]  # the new card took the top, the selected one moved
    expect(alice.locator("#flash")).to_contain_text("Not approved: the cards moved just now")
    time.sleep(SETTLE)
    assert not Decision.objects.exists()
    assert Proposal.objects.get(pk=waiting).status == "pending"


def test_undo_within_the_window_stops_the_action_and_after_it_the_action_runs(
    console: Callable[..., Any],
    undo_server_url: str,
    worker: Any,
    analyst: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    from approvals import connectors
    from approvals.models import ConnectorCall, Execution
    from audit.models import AuditEvent
    from tests.browser.conftest import UNDO_SECONDS

    undone = _propose(undo_server_url, identity_bot, "kdavis@corp.example")
    by_key = _propose(undo_server_url, identity_bot, "mnash@corp.example")
    runs = _propose(undo_server_url, identity_bot, "lmoore@corp.example")
    alice = console(analyst, server=undo_server_url)

    # Approve, then think better of it: the toast's Undo, within the window.
    alice.locator(f"#card-{undone} button.approve").click()
    expect(alice.locator("#flash")).to_contain_text(
        f"Approved: Disable user kdavis@corp.example. It runs in {UNDO_SECONDS} s unless you "
        "undo it."
    )
    toast = alice.locator(f"#undo-{undone}")
    expect(toast).to_contain_text("Approved Disable user kdavis@corp.example: runs in")
    expect(toast.locator(".undo-countdown")).to_have_text(re.compile(r"^[1-3]$"))
    expect(alice.locator(f"#card-{undone}")).to_have_count(0)
    toast.locator("button.undo").click()
    expect(alice.locator("#flash")).to_contain_text(
        "Approval undone: Disable user kdavis@corp.example is pending again; nothing ran."
    )
    expect(toast).to_have_count(0)
    expect(alice.locator(f"#card-{undone}")).to_be_visible(timeout=LIVE)  # back in the queue

    # The same with the keyboard: approve by click, u undoes the latest approval. (The undone
    # card came back above this one and moved it: a click within STEADY_MS is refused.)
    time.sleep(0.4)
    alice.locator(f"#card-{by_key} button.approve").click()
    expect(alice.locator(f"#undo-{by_key}")).to_be_visible()
    alice.keyboard.press("u")
    expect(alice.locator("#flash")).to_contain_text("Approval undone: Disable user mnash")
    expect(alice.locator(f"#card-{by_key}")).to_be_visible(timeout=LIVE)

    # Not undone: nothing runs before the window ends, and then it runs. (The card undone by
    # key came back above this one.)
    time.sleep(0.4)
    alice.locator(f"#card-{runs} button.approve").click()
    expect(alice.locator(f"#undo-{runs}")).to_be_visible()
    approved_at = Proposal.objects.get(pk=runs).decided_at
    execution = Execution.objects.get(proposal_id=runs)
    assert execution.status == "queued" and execution.attempts == 0
    assert abs((execution.not_before - approved_at).total_seconds() - UNDO_SECONDS) < 0.5
    assert not ConnectorCall.objects.filter(target="lmoore@corp.example").exists()
    call = _wait_for(
        lambda: ConnectorCall.objects.filter(target="lmoore@corp.example").first(),
        timeout=UNDO_SECONDS + 10,
    )
    assert call.at >= execution.not_before
    assert connectors.state_of("identity", "lmoore@corp.example") == {"enabled": False}
    expect(alice.locator(f"#undo-{runs}")).to_contain_text("the undo window is over")

    # By now the undone approvals' windows are long over and the worker has had their tasks:
    # their connector was never called and the users were never disabled.
    _wait_for(lambda: Execution.objects.filter(proposal_id=runs, status="succeeded").first(), 10)
    assert "approvals.tasks.run_execution" in worker.log()
    for pk, user in ((undone, "kdavis@corp.example"), (by_key, "mnash@corp.example")):
        assert not ConnectorCall.objects.filter(target=user).exists()
        assert connectors.state_of("identity", user) == {}
        proposal = Proposal.objects.get(pk=pk)
        assert proposal.status == "pending" and proposal.approvals == 0
        assert not proposal.decisions.exists()
        assert not Execution.objects.filter(proposal_id=pk).exists()
        undo = AuditEvent.objects.get(proposal_id=pk, event_type="proposal.approval_undone")
        assert undo.actor == "alice"
        assert undo.data["approval"]["at"] is not None
        assert 0 < undo.data["seconds_left"] <= UNDO_SECONDS


def _wait_for(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing after {timeout} s")
        time.sleep(0.1)


def test_the_second_click_of_a_double_click_does_not_approve_the_card_that_moved_up(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    # Reported: Approve double-clicked; the first click decides the card, the one below moves
    # up into its place, and the second click landed on that card's Approve button.
    first = _propose(live_server_url, identity_bot, "pking@corp.example")
    below = _propose(live_server_url, identity_bot, "qlane@corp.example")
    alice = console(analyst)
    button = alice.locator(f"#card-{first} button.approve")
    expect(button).to_be_visible()
    time.sleep(0.5)  # the page has settled: the analyst reads the first card
    box = button.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    alice.mouse.click(x, y)
    expect(alice.locator(f"#card-{first}")).to_have_count(0, timeout=LIVE)
    # The card below is where the first one was: the second click lands on its Approve.
    moved = alice.locator(f"#card-{below} button.approve").bounding_box()
    assert moved is not None and abs(moved["y"] - box["y"]) < 2, (moved, box)
    alice.mouse.click(x, y)
    expect(alice.locator("#flash")).to_contain_text(
        "Not approved: the cards moved under the pointer just now"
    )
    time.sleep(SETTLE)
    assert Proposal.objects.get(pk=first).status == "approved"
    assert Proposal.objects.get(pk=below).status == "pending"
    assert Decision.objects.filter(analyst=analyst).count() == 1

    # Once it has been still for a moment, a click on it is a click the analyst meant.
    alice.mouse.click(x, y)
    expect(alice.locator(f"#card-{below}")).to_have_count(0, timeout=LIVE)
    assert Proposal.objects.get(pk=below).status == "approved"


# Holds each undo request in the page for the given milliseconds, as a slow server would:
# its answer then reaches the flash after a second press of u has been explained there.
_SLOW_UNDO = """ms => {
  const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.slowUndo = /\\/undo\\/$/.test(url);
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function (body) {
    if (!this.slowUndo) return send.call(this, body);
    setTimeout(() => send.call(this, body), ms);
  };
}"""


@pytest.mark.parametrize("slow", ["nothing", "undo answer", "settle"])
def test_a_double_tap_of_u_undoes_one_approval_and_names_the_next(
    console: Callable[..., Any],
    undo_server_url: str,
    analyst: User,
    identity_bot: factories.AgentWithKey,
    slow: str,
) -> None:
    """A second u within a second is the same press, however the page is slowed: an undo's
    answer that comes after it keeps its explanation, and a u pressed before htmx has wired
    the newest toast's form undoes that approval in the page (a plain post of the form would
    reload the page, which forgets the first press, and the second would undo another)."""
    kept = _propose(undo_server_url, identity_bot, "rmoss@corp.example")
    undone = _propose(undo_server_url, identity_bot, "sholt@corp.example")
    alice = console(analyst, server=undo_server_url)
    if slow == "undo answer":
        alice.evaluate(_SLOW_UNDO, 800)
    elif slow == "settle":
        alice.evaluate("() => { htmx.config.defaultSettleDelay = 2000; }")
    time.sleep(0.5)
    alice.locator(f"#card-{kept} button.approve").click()
    expect(alice.locator(f"#undo-{kept}")).to_be_visible()
    time.sleep(0.4)  # the next card has moved up and stood still
    alice.locator(f"#card-{undone} button.approve").click()
    expect(alice.locator(f"#undo-{undone}")).to_be_visible()

    alice.keyboard.press("u")
    time.sleep(0.15)
    alice.keyboard.press("u")  # the same press to a tired hand: not a second undo
    expect(alice.locator("#flash")).to_contain_text(
        "One undo per press: the undo of the approval of “Disable user sholt@corp.example” was "
        "just sent. To undo the approval of “Disable user rmoss@corp.example” too, press u again."
    )
    expect(alice.locator(f"#card-{undone}")).to_be_visible(timeout=LIVE)
    assert Proposal.objects.get(pk=undone).status == "pending"
    assert Proposal.objects.get(pk=kept).status == "approved"
    expect(alice.locator(f"#undo-{kept}")).to_be_visible()
    # Whether the first press's answer came before the second press or after it, both are
    # there to read: what was undone, and why the second press undid nothing.
    expect(alice.locator("#flash")).to_contain_text("One undo per press")
    expect(alice.locator("#flash")).to_contain_text(
        "Approval undone: Disable user sholt@corp.example is pending again"
    )


def test_a_key_that_cannot_act_says_why_and_a_focused_checkbox_keeps_the_keys(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    senior: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    first = _propose(live_server_url, identity_bot, "tnash@corp.example")
    second = _propose(live_server_url, identity_bot, "uoak@corp.example")
    services.agent_suspend(agent=identity_bot.agent, by=senior, reason="checking its model")
    alice = console(analyst)
    expect(alice.locator(f"#card-{first}")).to_have_class(re.compile(r"\bselected\b"))
    time.sleep(0.5)

    # Reported: a on a suspended agent's card did nothing and said nothing.
    alice.keyboard.press("a")
    expect(alice.locator("#flash")).to_contain_text(
        "Not approved: identity-bot is suspended: its proposals cannot be approved."
    )
    # Reported: with a card's checkbox focused, j, k and a did nothing (a box is not typing).
    alice.locator(f"#card-{first} input.pick").focus()
    alice.keyboard.press("j")
    expect(alice.locator(f"#card-{second}")).to_have_class(re.compile(r"\bselected\b"))
    # A key with another card's checkbox focused would act on a card the analyst is not on.
    alice.locator(f"#card-{first} input.pick").focus()
    time.sleep(0.5)
    alice.keyboard.press("r")
    expect(alice.locator("#flash")).to_contain_text(
        "Not rejected: the box you are on belongs to another card than the selected one."
    )
    time.sleep(SETTLE)
    assert not Decision.objects.exists()


def test_an_approval_is_undone_from_another_tab_and_shift_u_undoes_a_bulk_approval(
    console: Callable[..., Any],
    undo_server_url: str,
    analyst: User,
    identity_bot: factories.AgentWithKey,
) -> None:
    """Reported: the undo toast was only in the tab that approved; the analyst's other tab
    said "Nothing to undo" while the action was about to run. And a bulk approval made by
    mistake could not be undone within its window one press of u at a time."""
    single = _propose(undo_server_url, identity_bot, "vwood@corp.example")
    bulk = [_propose(undo_server_url, identity_bot, f"bulk{n}@corp.example") for n in range(4)]
    here = console(analyst, server=undo_server_url)
    there = console(analyst, server=undo_server_url)  # the same analyst's second tab
    time.sleep(0.5)

    here.locator(f"#card-{single} button.approve").click()
    toast = there.locator(f"#undo-{single}")
    expect(toast).to_contain_text("Approved Disable user vwood@corp.example: runs in", timeout=LIVE)
    there.keyboard.press("u")
    expect(there.locator("#flash")).to_contain_text(
        "Approval undone: Disable user vwood@corp.example is pending again"
    )
    expect(here.locator(f"#undo-{single}")).to_have_count(0, timeout=LIVE)  # gone in both
    assert Proposal.objects.get(pk=single).status == "pending"
    expect(here.locator(f"#card-{single}")).to_be_visible(timeout=LIVE)

    time.sleep(0.5)
    for pk in bulk:
        here.locator(f"#card-{pk} input.pick").check()
    here.locator("#bulk-form button.bulk-approve").click()
    expect(here.locator("#flash")).to_contain_text("Approved 4 of 4.")
    expect(here.locator("#flash button.undo-all")).to_have_text(re.compile("Undo all 4 approvals"))
    # Four toasts would stand over the cards' buttons: three show, the fourth is counted.
    expect(there.locator("#undo-tray .undo-toast:visible")).to_have_count(3, timeout=LIVE)
    expect(there.locator("#undo-more")).to_have_text(
        "and 1 more approval in the undo window: Shift+U undoes them all."
    )
    there.keyboard.press("Shift+U")
    for pk in bulk:
        expect(there.locator(f"#card-{pk}")).to_be_visible(timeout=LIVE)
    # One answer for the four, not the last undo's words alone.
    expect(there.locator("#flash")).to_have_text(
        "Undone all 4 approvals: each is pending again; nothing ran.", timeout=LIVE
    )
    assert set(Proposal.objects.filter(pk__in=bulk).values_list("status", flat=True)) == {"pending"}
    expect(here.locator("#undo-tray .undo-toast")).to_have_count(0, timeout=LIVE)
