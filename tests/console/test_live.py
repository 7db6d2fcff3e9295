"""The console's websocket over the real Redis channel layer: who may connect, and what the
services broadcast after they commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.utils import timezone

from approvals import live, selectors, services
from approvals.models import Execution, Proposal
from audit.models import AuditEvent
from soc_console.asgi import application
from tests import factories
from tests.event_loop import run_scenario

# PostgreSQL only (the SQLite run leaves these out): committed rows read by other sessions.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")


def _cookie(user: User) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (
        b"cookie",
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode(),
    )


def _socket(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    # As a browser on the console's own page sends it: the Host the Origin must match.
    return WebsocketCommunicator(application, "/ws/queue/", headers=[HOST, *headers])


async def _receive_until(
    socket: WebsocketCommunicator, wanted: Callable[[str], bool], timeout: float = 5.0
) -> str:
    """The next message that matches; others (counters, reviews) may arrive first."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, "no matching message arrived"
        message = await socket.receive_from(timeout=left)
        if wanted(message):
            return message


async def _with_counts(socket: WebsocketCommunicator, html: str) -> str:
    """The top bar's counts that go with an update: in its own message, or in the next one
    within LIVE_COUNTERS_SECONDS when this process read them a moment before."""
    if 'id="queue-counters"' in html:
        return html
    return await _receive_until(socket, lambda m: 'id="queue-counters"' in m, timeout=2)


def _cards_only(sent: list[str]) -> Callable[..., None]:
    """A send_html that keeps the cards' messages, not the card contexts that follow them
    (live.contexts_changed; see test_a_cards_context_follows_it_once_…)."""

    def send(html: str, counters: bool = False) -> None:
        if "data-context-for=" not in html:
            sent.append(html)

    return send


def test_anonymous_is_refused() -> None:
    async def scenario() -> None:
        socket = _socket(ORIGIN)
        connected, _ = await socket.connect()
        assert not connected
        await socket.disconnect()

    run_scenario(scenario)


def test_bad_origin_is_refused(analyst: User) -> None:
    cookie = _cookie(analyst)

    async def scenario() -> None:
        socket = _socket((b"origin", b"https://evil.example"), cookie)
        connected, _ = await socket.connect()
        assert not connected
        await socket.disconnect()

    run_scenario(scenario)


def test_inactive_user_is_refused(analyst: User) -> None:
    cookie = _cookie(analyst)
    User.objects.filter(pk=analyst.pk).update(is_active=False)

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        connected, _ = await socket.connect()
        assert not connected
        await socket.disconnect()

    run_scenario(scenario)


def test_a_signed_in_user_without_a_console_role_is_refused() -> None:
    cookie = _cookie(factories.user("visitor"))

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        connected, code = await socket.connect()
        assert not connected
        assert code == 4403
        await socket.disconnect()

    run_scenario(scenario)


def test_signed_in_user_receives_the_card_after_a_proposal_is_submitted(
    analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    cookie = _cookie(analyst)

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        connected, _ = await socket.connect()
        assert connected
        proposal: Proposal = await sync_to_async(factories.proposal)(
            agent_with_key, target="ws-0142.corp.example", rationale="Beaconing every 60 s."
        )
        html = await _receive_until(socket, lambda m: str(proposal.id) in m)
        assert '<div hx-swap-oob="beforeend:#queue-cards" data-at="' in html
        assert f'<article id="card-{proposal.id}"' in html
        assert "Beaconing every 60 s." in html
        assert '<strong data-count="pending">1</strong>' in await _with_counts(socket, html)
        await socket.disconnect()

    run_scenario(scenario)


def test_nothing_is_broadcast_for_a_change_that_rolled_back(
    analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    cookie = _cookie(analyst)

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]

        def submit_then_fail() -> None:
            from django.db import transaction

            with pytest.raises(RuntimeError), transaction.atomic():
                factories.proposal(agent_with_key)
                raise RuntimeError("the outer transaction fails")

        await sync_to_async(submit_then_fail)()
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    run_scenario(scenario)


def test_decided_card_is_deleted_in_every_console(
    analyst: User, analyst2: User, agent_with_key: factories.AgentWithKey
) -> None:
    watchers = [_cookie(analyst), _cookie(analyst2)]
    proposal = factories.proposal(agent_with_key, target="ws-0142.corp.example")
    assert live.wait_idle()  # its arrival is broadcast before the consoles connect

    async def scenario() -> None:
        sockets = [_socket(ORIGIN, cookie) for cookie in watchers]
        for socket in sockets:
            assert (await socket.connect())[0]
        await sync_to_async(services.proposal_approve)(proposal_id=proposal.id, analyst=analyst)
        for socket in sockets:
            html = await _receive_until(socket, lambda m: f'id="card-{proposal.id}"' in m)
            assert f'<div id="card-{proposal.id}" hx-swap-oob="delete"' in html
            assert "was just approved by alice." in html
            # The proposal page's state and decisions follow, out of band by id.
            assert f'<section id="state-{proposal.id}" class="state" hx-swap-oob="true">' in html
            assert f'<div id="decisions-{proposal.id}" hx-swap-oob="true">' in html
            assert "<td>alice</td><td>approve</td>" in html
            assert '<strong data-count="pending">0</strong>' in await _with_counts(socket, html)
            await socket.disconnect()

    run_scenario(scenario)


def test_reviewing_is_relayed_to_the_others(
    analyst: User, analyst2: User, pending: Proposal
) -> None:
    alice, bob = _cookie(analyst), _cookie(analyst2)

    async def scenario() -> None:
        looking, watching = _socket(ORIGIN, alice), _socket(ORIGIN, bob)
        assert (await looking.connect())[0] and (await watching.connect())[0]
        await looking.send_json_to({"reviewing": str(pending.id)})
        html = await _receive_until(watching, lambda m: "reviewing-" in m)
        assert f'id="reviewing-{pending.id}"' in html
        assert "being reviewed by alice" in html
        # Anything else a browser sends is ignored, and markup in it never reaches others.
        await looking.send_to(text_data='{"reviewing": "<script>alert(1)</script>"}')
        await looking.send_to(text_data="not json")
        assert await watching.receive_nothing(timeout=0.3)
        await looking.disconnect()
        await watching.disconnect()

    run_scenario(scenario)


def test_a_quiet_socket_hears_a_beat_every_period_and_updates_as_they_come(
    analyst: User, agent_with_key: factories.AgentWithKey, settings: Any
) -> None:
    # The page takes a socket silent for three beats for dead (console.js): the server never
    # leaves it that silent.
    settings.CONSOLE_HEARTBEAT_SECONDS = 0.3
    cookie = _cookie(analyst)

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        loop = asyncio.get_running_loop()
        beats, heard = [], []
        for _ in range(4):
            beats.append(await socket.receive_from(timeout=2))
            heard.append(loop.time())
        assert beats == ['<template data-beat=""></template>'] * 4
        gaps = [later - earlier for earlier, later in zip(heard, heard[1:], strict=False)]
        assert all(0.25 <= gap < 1.0 for gap in gaps), gaps  # one a period, not a stream
        # Updates still come as they happen, each in a message of its own.
        proposal: Proposal = await sync_to_async(factories.proposal)(
            agent_with_key, target="ws-0007.corp.example"
        )
        update = await _receive_until(socket, lambda m: str(proposal.id) in m)
        assert "data-beat" not in update
        await socket.disconnect()

    run_scenario(scenario)


def test_emergency_stop_banner_is_broadcast(analyst: User, manager: User) -> None:
    cookie = _cookie(analyst)

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        await sync_to_async(services.emergency_stop_engage)(by=manager, reason="rogue agent")
        html = await _receive_until(socket, lambda m: 'id="stop-banner"' in m)
        assert "EMERGENCY STOP ENGAGED" in html and "rogue agent" in html and "maya" in html
        assert 'id="stop-control"' in html and "Lift the emergency stop" in html
        await sync_to_async(services.emergency_stop_release)(by=manager, reason="")
        html = await _receive_until(socket, lambda m: 'id="stop-banner"' in m)
        assert "EMERGENCY STOP ENGAGED" not in html
        assert "Engage emergency stop" in html
        await socket.disconnect()

    run_scenario(scenario)


def test_sweep_escalates_audits_broadcasts_and_mails_the_seniors_a_digest(
    analyst: User, senior: User, pending: Proposal
) -> None:
    cookie = _cookie(analyst)
    Proposal.objects.filter(pk=pending.pk).update(escalate_at=timezone.now() - timedelta(seconds=1))

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        report = await sync_to_async(services.sweep)()
        assert report.escalated == 1 and report.expired == 0
        html = await _receive_until(socket, lambda m: str(pending.id) in m)
        assert f'<article id="card-{pending.id}" class="card' in html
        assert " escalated" in html and '<span class="badge esc">escalated</span>' in html
        assert "<strong>1</strong> escalated" in await _with_counts(socket, html)
        await socket.disconnect()

    run_scenario(scenario)
    pending.refresh_from_db()
    assert pending.status == "pending" and pending.escalated_at is not None
    event = AuditEvent.objects.get(proposal_id=pending.id, event_type="proposal.escalated")
    assert event.actor == "system"
    assert [m.to for m in mail.outbox] == [["sam@soc.example"]]
    # The escalation mail is the window's digest (approvals.notify.escalation_digest).
    assert "1 escalated proposal" in mail.outbox[0].subject
    assert "isolate_host ws-0142.corp.example" in mail.outbox[0].body
    # A second sweep does not escalate twice.
    assert services.sweep().escalated == 0


def test_sweep_expires_audits_and_removes_the_card_everywhere(
    analyst: User, pending: Proposal
) -> None:
    cookie = _cookie(analyst)
    Proposal.objects.filter(pk=pending.pk).update(
        escalated_at=timezone.now(), expires_at=timezone.now() - timedelta(seconds=1)
    )

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        report = await sync_to_async(services.sweep)()
        assert report.expired == 1
        html = await _receive_until(socket, lambda m: str(pending.id) in m)
        assert f'<div id="card-{pending.id}" hx-swap-oob="delete"' in html
        assert "is no longer pending: it was expired." in html
        await socket.disconnect()

    run_scenario(scenario)
    pending.refresh_from_db()
    assert pending.status == "expired"
    assert (
        AuditEvent.objects.filter(proposal_id=pending.id, event_type="proposal.expired").count()
        == 1
    )


def test_many_consoles_connecting_at_once_each_get_every_update_in_order(
    analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    cookie = _cookie(analyst)
    # Every update, in order, to each of sixty consoles in this one process: what is tested is
    # that none is refused, lost or reordered, not how soon (tests/browser and bench.live time
    # it), so a busy machine gets longer than the usual 1 s to accept and 5 s to deliver, within
    # the scenario's minute (in one run of the whole suite, sixty sockets were not all accepted
    # within 1 s).
    patient = 30.0

    async def scenario() -> None:
        sockets = [_socket(ORIGIN, cookie) for _ in range(60)]
        results = await asyncio.gather(*(socket.connect(timeout=patient) for socket in sockets))
        assert all(connected for connected, _ in results)
        first = await sync_to_async(factories.proposal)(
            agent_with_key, target="ws-0001.corp.example"
        )
        second = await sync_to_async(factories.proposal)(
            agent_with_key, target="ws-0002.corp.example"
        )
        for socket in sockets:
            got = [
                await _receive_until(
                    socket, lambda m: "card-" in m and "beforeend" in m, timeout=patient
                )
                for _ in range(2)
            ]
            assert str(first.id) in got[0] and str(second.id) in got[1]
        # A console that leaves stops receiving; the others carry on.
        await sockets[0].disconnect()
        third = await sync_to_async(factories.proposal)(
            agent_with_key, target="ws-0003.corp.example"
        )
        for socket in sockets[1:]:
            assert str(third.id) in await _receive_until(
                socket, lambda m: str(third.id) in m, timeout=patient
            )
            await socket.disconnect()

    run_scenario(scenario)


def test_a_new_card_is_rendered_from_the_submitted_row_unless_decided_since(
    analyst: User, agent_with_key: factories.AgentWithKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(live, "send_html", _cards_only(sent))
    proposal = factories.proposal(agent_with_key, target="ws-0042.corp.example")
    assert proposal.status == "pending"
    (arrival,) = sent
    assert 'hx-swap-oob="beforeend:#queue-cards"' in arrival
    assert f'data-id="{proposal.id}"' in arrival and "ws-0042.corp.example" in arrival

    # The render was late and an analyst approved in the meantime: what goes out is the
    # decided proposal (its card removed), not the pending card from the submitted row.
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    live.wait_idle()
    sent.clear()
    live.proposal_committed(proposal)
    (late,) = sent
    assert f'id="card-{proposal.id}" hx-swap-oob="delete"' in late
    assert "beforeend:#queue-cards" not in late


def test_a_burst_of_submissions_reads_the_counts_at_most_once_per_interval_and_ends_on_the_latest(
    analyst: User,
    agent_with_key: factories.AgentWithKey,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    import re
    import time

    from approvals import selectors

    settings.LIVE_COUNTERS_SECONDS = 0.4
    reads: list[float] = []
    real_counters = selectors.queue_counters

    def counting() -> selectors.Counters:
        reads.append(time.monotonic())
        return real_counters()

    monkeypatch.setattr(selectors, "queue_counters", counting)
    cookie = _cookie(analyst)
    burst = 8

    def submit_burst() -> list[str]:
        time.sleep(0.4)  # whatever read the counts last, it was more than an interval ago
        return [
            str(
                factories.proposal(
                    agent_with_key, target=f"ws-{n:04d}.corp.example", confidence=0.9, settle=False
                ).id
            )
            for n in range(burst)
        ]

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        ids = await sync_to_async(submit_burst)()
        cards: set[str] = set()
        pending_shown: list[int] = []
        while len(cards) < burst or pending_shown[-1:] != [burst]:
            message = await _receive_until(socket, lambda m: True, timeout=3)
            cards.update(re.findall(r'<article id="card-([0-9a-f-]+)"', message))
            pending_shown += [int(n) for n in re.findall(r'data-count="pending">(\d+)<', message)]
        await socket.disconnect()
        assert cards == set(ids)
        # Each card was sent as it came; the counts were not read for each one, and the last
        # counts sent are those after the whole burst.
        assert pending_shown[-1] == burst
        assert 1 <= len(reads) < burst
        gaps = [b - a for a, b in zip(reads, reads[1:], strict=False)]
        assert all(gap >= 0.35 for gap in gaps), gaps  # 0.4 s, less the read itself

    run_scenario(scenario)


def test_the_server_places_each_card_on_the_page_and_keeps_the_page_full(
    analyst: User,
    agent_with_key: factories.AgentWithKey,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    import re

    from agents.models import Criticality

    settings.QUEUE_PAGE_SIZE = 2
    sent: list[str] = []
    monkeypatch.setattr(live, "send_html", _cards_only(sent))
    for name, criticality in (("low", Criticality.LOW), ("high", Criticality.HIGH)):
        factories.asset(f"{name}.corp.example", criticality=criticality)
    factories.asset("medium.corp.example", criticality=Criticality.MEDIUM)

    def arrival(html: str, proposal: Proposal) -> dict[str, str]:
        match = re.search(rf'<div [^>]*data-card="{proposal.id}"[^>]*>', html)
        assert match, html
        return dict(re.findall(r'(data-[a-z]+)="([^"]*)"', match.group(0)))

    low = factories.proposal(agent_with_key, target="low.corp.example")
    assert arrival(sent[-1], low)["data-before"] == ""  # alone: at the end
    high = factories.proposal(agent_with_key, target="high.corp.example")
    assert arrival(sent[-1], high)["data-before"] == str(low.id)  # above the low one

    # The page is full: a card in the middle goes before the low one and pushes it below.
    medium = factories.proposal(agent_with_key, target="medium.corp.example")
    placed = sent[-1]
    assert arrival(placed, medium)["data-before"] == str(low.id)
    assert f'<div id="card-{low.id}" hx-swap-oob="delete"' in placed
    assert 'data-below="1"' in placed

    # A card below the page goes to no console.
    sent.clear()
    factories.asset("low2.corp.example", criticality=Criticality.LOW)
    below = factories.proposal(agent_with_key, target="low2.corp.example")
    assert below.status == "pending"
    assert f'data-card="{below.id}"' not in sent[-1]
    assert "article" not in sent[-1]

    # The high card leaves: the low one moves up onto the page, after the medium one.
    services.proposal_approve(proposal_id=high.id, analyst=analyst)
    assert live.wait_idle()
    left = sent[-1]
    assert f'<div id="card-{high.id}" hx-swap-oob="delete"' in left
    assert arrival(left, medium) == {
        **arrival(left, medium),
        "data-fill": "1",
        "data-before": str(low.id),
    }
    assert arrival(left, low)["data-fill"] == "1" and arrival(left, low)["data-before"] == ""
    assert f'data-card="{below.id}"' not in left
    assert [card.id for card in selectors.pending_queue()] == [medium.id, low.id]

    # Its action runs and settles: the updates tell the consoles the card is gone, as it has
    # been since the decision, and move nothing up onto the page (the decision's did).
    sent.clear()
    ran = services.execution_run(execution_id=Execution.objects.get(proposal=high).id)
    assert ran is not None and ran.status == "succeeded"
    assert live.wait_idle()
    assert sent and all(f'<div id="card-{high.id}" hx-swap-oob="delete"' in m for m in sent)
    assert not [m for m in sent if "data-fill" in m or "data-card=" in m], sent


def test_a_cards_context_follows_it_once_for_every_console_and_ends_a_group_that_left(
    analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    """A duplicate's card goes out as fast as any card; its group (how many, which agents)
    follows in a message of its own, rendered once for every card of that action and target.
    When the group is decided, an empty context ends it on the pages."""
    cookie = _cookie(analyst)
    first = factories.proposal(agent_with_key, target="web-prod03.corp.example")
    key = "isolate_host web-prod03.corp.example"

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        second: Proposal = await sync_to_async(factories.proposal)(
            agent_with_key, target="WEB-PROD03.corp.example."
        )
        card = await _receive_until(socket, lambda m: f'id="card-{second.id}"' in m)
        assert f'data-group="{key}"' in card and "data-context-for" not in card
        context = await _receive_until(socket, lambda m: "data-context-for" in m)
        assert context.count(f'data-context-for="{key}"') == 1
        assert "<strong>2 proposals</strong>" in context and "Approve all 2" in context

        await sync_to_async(services.proposals_decide_bulk)(
            proposal_ids=[str(first.id), str(second.id)],
            analyst=analyst,
            verdict="reject",
            reason="one host, already handled",
        )
        ended = await _receive_until(
            socket, lambda m: f'data-context-for="{key}"' in m and 'data-group-count="1"' in m
        )
        assert "proposals</strong>" not in ended
        await socket.disconnect()

    run_scenario(scenario)


def test_the_contexts_of_a_burst_are_read_once_and_sent_in_one_message(
    analyst: User,
    agent_with_key: factories.AgentWithKey,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five duplicates in quick succession: each card goes out on its own, and the group they
    make is read and rendered once for all of them, in one message, within the window."""
    settings.LIVE_CONTEXT_SECONDS = 1.0
    reads: list[list[str]] = []
    read = selectors.open_on_targets

    def counted(targets: Any, **kwargs: Any) -> selectors.OpenOnTargets:
        reads.append(list(targets))
        return read(targets, **kwargs)

    monkeypatch.setattr(selectors, "open_on_targets", counted)
    cookie = _cookie(analyst)
    key = "isolate_host web-prod07.corp.example"

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        burst: list[Proposal] = []
        for _ in range(5):
            burst.append(
                await sync_to_async(factories.proposal)(
                    agent_with_key, target="web-prod07.corp.example", settle=False
                )
            )
        messages: list[str] = []
        context = await _receive_until(
            socket, lambda m: messages.append(m) or "data-context-for" in m
        )
        assert "<strong>5 proposals</strong>" in context
        assert context.count(f'data-context-for="{key}"') == 1
        for proposal in burst:  # every card went out before the context that follows them
            assert any(f'id="card-{proposal.id}"' in m for m in messages)
        await socket.disconnect()

    run_scenario(scenario)
    assert live.wait_idle()
    # The first card was alone when it went out (nothing read for it); the other four share
    # one read of what is open on the target.
    assert reads == [["web-prod07.corp.example"]]


def test_an_approvals_undo_toast_reaches_every_console_of_its_analyst_and_only_theirs(
    analyst: User, analyst2: User, agent_with_key: factories.AgentWithKey, settings: Any
) -> None:
    settings.APPROVAL_UNDO_SECONDS = 30
    mine = [_cookie(analyst), _cookie(analyst)]  # two tabs (two sign-ins) of one analyst
    theirs = _cookie(analyst2)
    proposal = factories.proposal(agent_with_key, target="ws-0142.corp.example")
    assert live.wait_idle()
    toast = f'id="undo-{proposal.id}"'

    async def scenario() -> None:
        sockets = [_socket(ORIGIN, cookie) for cookie in [*mine, theirs]]
        for socket in sockets:
            assert (await socket.connect())[0]
        *own, other = sockets
        await sync_to_async(services.proposal_approve)(proposal_id=proposal.id, analyst=analyst)
        for socket in own:
            html = await _receive_until(socket, lambda m: toast in m)
            assert '<div id="undo-tray" hx-swap-oob="afterbegin">' in html
            assert f'hx-post="/proposals/{proposal.id}/undo/"' in html
            assert "runs in" in html
        # The other analyst sees the card leave, never the toast.
        seen = await _receive_until(other, lambda m: f'id="card-{proposal.id}"' in m)
        assert toast not in seen
        await sync_to_async(services.approval_undo)(proposal_id=proposal.id, analyst=analyst)
        for socket in own:
            html = await _receive_until(socket, lambda m: toast in m)
            assert f'<div id="undo-{proposal.id}" hx-swap-oob="delete"></div>' in html
        # The card came back to the other analyst's queue; no toast went to them in between.
        while True:
            message = await other.receive_from(timeout=5)
            assert toast not in message
            if f'id="card-{proposal.id}"' in message and "hx-swap-oob" in message:
                break
        for socket in sockets:
            await socket.disconnect()

    run_scenario(scenario)


def test_an_approval_held_by_the_stop_says_so_in_its_toast(
    analyst: User, manager: User, agent_with_key: factories.AgentWithKey, settings: Any
) -> None:
    settings.APPROVAL_UNDO_SECONDS = 30
    cookie = _cookie(analyst)
    proposal = factories.proposal(agent_with_key, target="ws-0142.corp.example")
    services.emergency_stop_engage(by=manager, reason="rogue agent")
    assert live.wait_idle()

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        await sync_to_async(services.proposal_approve)(proposal_id=proposal.id, analyst=analyst)
        html = await _receive_until(socket, lambda m: f'id="undo-{proposal.id}"' in m)
        assert "held, runs only once re-confirmed; undo within" in html
        assert "runs in" not in html
        await socket.disconnect()

    run_scenario(scenario)
