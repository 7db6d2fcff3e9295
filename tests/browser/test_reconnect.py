"""A console whose websocket dropped catches up when it reconnects: whatever arrived and was
decided while it was away, the queue then shows exactly the server's order."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import WebSocketRoute, expect

from agents.models import Criticality
from approvals import live, selectors, services
from tests import factories
from tests.browser.conftest import _serve, sign_in
from tests.browser.proposing import propose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms


class Socket:
    """The page's websocket, routed through Playwright so that the test can cut it.

    While `down`, every reconnect attempt is answered with 1012 ("service restart"), one of
    the codes after which the htmx ws extension tries again, as it does when the server
    restarts.
    """

    def __init__(self) -> None:
        self.down = False
        self.connected: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.hushed: set[int] = set()  # ids of the server sides whose messages are dropped

    def route(self, page_side: WebSocketRoute) -> None:
        if self.down:
            page_side.close(code=1012, reason="restarting")
            return
        server_side = page_side.connect_to_server()

        def forward(message: str | bytes) -> None:
            if id(server_side) not in self.hushed:
                page_side.send(message)

        server_side.on_message(forward)
        self.connected.append((page_side, server_side))

    def hush(self) -> None:
        """The connections open now go silent and stay open: nothing the server sends reaches
        the page and neither end hears of a close (a NAT entry dropped, a laptop asleep)."""
        self.hushed.update(id(server_side) for _, server_side in self.connected)

    def drop(self) -> None:
        self.down = True
        for page_side, server_side in self.connected:
            page_side.close(code=1012, reason="restarting")
            server_side.close()
        self.connected = []


HEARTBEAT = 0.5  # s, on beat_server_url: a page that hears nothing for 1.5 s reconnects


@pytest.fixture(scope="module")
def beat_server_url(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """A console whose sockets beat every HEARTBEAT seconds of silence."""
    with _serve(
        django_db_blocker, "live-server-beat", CONSOLE_HEARTBEAT_SECONDS=str(HEARTBEAT)
    ) as url:
        yield url


@pytest.fixture
def routed_console(browser: Any, live_server_url: str) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_console(user: User, server: str | None = None) -> tuple[Any, Socket]:
        url = server or live_server_url
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(5000)
        socket = Socket()
        page.route_web_socket(re.compile(r"/ws/queue/$"), socket.route)
        sign_in(page, url, user.username)
        page.evaluate("window.__sameDocument = true")  # a reload would lose it
        return page, socket

    yield open_console
    for context in contexts:
        context.close()


_propose = partial(propose, expect="pending")


def _shown(page: Any) -> list[str]:
    return page.eval_on_selector_all("#queue-cards > .card", "cs => cs.map(c => c.dataset.id)")


def _server_order() -> list[str]:
    return [str(card.id) for card in selectors.pending_queue()]


def test_after_a_dropped_socket_the_queue_shows_the_servers_current_order(
    routed_console: Any,
    live_server_url: str,
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    for name, criticality in (
        ("ws-low", Criticality.LOW),
        ("ws-medium", Criticality.MEDIUM),
        ("srv-high", Criticality.HIGH),
        ("dc-critical", Criticality.CRITICAL),
        ("ws-low-2", Criticality.LOW),
    ):
        factories.asset(f"{name}.corp.example", criticality=criticality)
    low = _propose(live_server_url, agent_with_key, "ws-low.corp.example")
    medium = _propose(live_server_url, agent_with_key, "ws-medium.corp.example")
    high = _propose(live_server_url, agent_with_key, "srv-high.corp.example")
    alice, socket = routed_console(analyst)
    assert _shown(alice) == [high, medium, low] == _server_order()

    socket.drop()
    expect(alice.locator("#live-status")).to_have_text("reconnecting…")

    # Meanwhile: one card above all the others and one below them arrive, bob approves one
    # that alice has on screen, and one of the new ones is rejected before she ever saw it.
    top = _propose(live_server_url, agent_with_key, "dc-critical.corp.example")
    bottom = _propose(live_server_url, agent_with_key, "ws-low-2.corp.example")
    services.proposal_approve(proposal_id=medium, analyst=analyst2)
    services.proposal_reject(proposal_id=bottom, analyst=analyst2, reason="Known scanner.")
    assert live.wait_idle()  # broadcast, to nobody: alice's socket is down
    expected = _server_order()
    assert expected == [top, high, low]
    time.sleep(0.5)
    assert _shown(alice) == [high, medium, low]  # nothing reached the page

    socket.down = False
    expect(alice.locator("#live-status")).to_have_text("live", timeout=10_000)
    deadline = time.monotonic() + LIVE / 1000
    while _shown(alice) != expected:
        assert time.monotonic() < deadline, f"shown {_shown(alice)}, server {expected}"
        time.sleep(0.05)
    expect(alice.locator('[data-count="pending"]')).to_have_text("3")
    expect(alice.locator(f"#card-{medium}")).to_have_count(0)
    assert alice.evaluate("window.__sameDocument") is True  # caught up without a reload

    # And it is live again: the next card goes where the server puts it.
    factories.asset("srv-high-2.corp.example", criticality=Criticality.HIGH)
    later = _propose(live_server_url, agent_with_key, "srv-high-2.corp.example")
    expect(alice.locator(f"#card-{later}")).to_be_visible(timeout=LIVE)
    assert _shown(alice) == _server_order() == [top, high, later, low]


def test_the_card_an_analyst_was_on_says_it_left_when_it_was_decided_during_the_outage(
    routed_console: Any,
    live_server_url: str,
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    """Alice is on a card when her connection drops; bob rejects it meanwhile. Once she is
    back, the card does not silently vanish: a notice stands in its place, links to its page,
    and nothing is selected, so her next key acts on no card she has not looked at."""
    first = _propose(live_server_url, agent_with_key, "ws-0001.corp.example")
    second = _propose(live_server_url, agent_with_key, "ws-0002.corp.example")
    alice, socket = routed_console(analyst)
    alice.click(f"#card-{first} .target")
    expect(alice.locator(f"#card-{first}")).to_have_class(re.compile(r"\bselected\b"))

    socket.drop()
    expect(alice.locator("#live-status")).to_have_text("reconnecting…")
    services.proposal_reject(proposal_id=first, analyst=analyst2, reason="Known scanner.")
    assert live.wait_idle()

    socket.down = False
    expect(alice.locator("#live-status")).to_have_text("live", timeout=10_000)
    notice = alice.locator(f'#queue-cards > .card-left[data-left="{first}"]')
    expect(notice).to_contain_text("no longer in this list", timeout=LIVE)
    expect(notice.locator("a")).to_have_attribute("href", f"/proposals/{first}/")
    expect(alice.locator(f"#card-{first}")).to_have_count(0)
    assert _shown(alice) == [second]
    expect(alice.locator("#queue-cards > .card.selected")).to_have_count(0)
    expect(alice.locator("#flash")).to_contain_text("no longer in this list")
    alice.keyboard.press("a")  # no card is selected: nothing is decided
    time.sleep(0.5)
    assert selectors.proposal_detail(second).status == "pending"


def test_a_socket_that_goes_silent_is_replaced_and_the_queue_catches_up(
    routed_console: Any,
    beat_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    """A connection can die without a close reaching the page: the badge would say "live"
    over a queue that no longer changes. The server beats while it has nothing to say; a page
    that hears nothing for three beats says so, connects again and re-reads the queue."""
    first = _propose(beat_server_url, agent_with_key, "ws-0041.corp.example")
    alice, socket = routed_console(analyst, server=beat_server_url)
    # A quiet queue is not a silent line: the beats keep the one socket. (Waited in the page:
    # the routed socket's messages reach it only while Playwright runs.)
    alice.wait_for_timeout(HEARTBEAT * 5 * 1000)
    expect(alice.locator("#live-status")).to_have_text("live")
    assert len(socket.connected) == 1
    # An error on screen when the line goes silent: what comes after goes under it.
    alice.locator(f"#card-{first} button.reject").click()
    expect(alice.locator("#flash .flash.error")).to_contain_text("needs a reason")

    # What the badge says, kept: the page says it for as long as a new socket takes to open.
    alice.evaluate(
        """() => { window.__said = [];
        const badge = document.getElementById("live-status");
        new MutationObserver(() => window.__said.push(badge.textContent))
          .observe(badge, { childList: true, characterData: true, subtree: true }); }"""
    )
    socket.hush()
    arrived = _propose(beat_server_url, agent_with_key, "ws-0042.corp.example")
    expect(alice.locator(f"#card-{arrived}")).to_be_visible(timeout=HEARTBEAT * 6 * 1000 + LIVE)
    said = alice.evaluate("window.__said")
    assert any(re.fullmatch(r"no word from the server for \d+ s: reconnecting…", s) for s in said)
    expect(alice.locator("#live-status")).to_have_text("live")
    expect(alice.locator("#flash")).to_contain_text(
        re.compile(r"No word from the server for \d+ s: connected again, and the queue is re-read")
    )
    expect(alice.locator("#flash .flash.error")).to_contain_text("needs a reason")
    assert len(socket.connected) == 2
    assert alice.evaluate("window.__sameDocument") is True  # caught up without a reload

    # Live again on the new socket.
    later = _propose(beat_server_url, agent_with_key, "ws-0043.corp.example")
    expect(alice.locator(f"#card-{later}")).to_be_visible(timeout=LIVE)
    expect(alice.locator("#live-status")).to_have_text("live")
