"""Live updates: after a service commits, render the changed pieces and push them to every
open console over the channel layer. The htmx ws extension swaps them in out-of-band.

The server keeps the queue page in order, not the browser: a card that enters the page
comes with the cards it goes before, the cards it pushes below the page are deleted, and a
card that leaves brings in the ones that move up onto the page. Each is computed and
rendered once per change, for every console alike (every console shows the same page: the
QUEUE_PAGE_SIZE highest-priority pending proposals).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections
from django.template.loader import render_to_string

from agents import demotion

from . import background, connector_state, selectors
from .models import MAX_TEXT, MIN_REASON, Proposal, ProposalStatus
from .placement import fills, placement_of

logger = logging.getLogger(__name__)

GROUP = "console"

# The rules the decision forms state as attributes; a page gets them from the context
# processor, which a live render (no request) does not run.
FORM_RULES = {"min_reason": MIN_REASON, "max_text": MAX_TEXT}

# A template's indentation: every console's socket compresses every message on its own, so each
# byte left out of a broadcast is saved once per open console. A line break stays a line break
# (rendered as the same space); a <pre> block (a connector's result) is left as it is.
_INDENT = re.compile(r"\n\s+")
_PRE = re.compile(r"(<pre\b.*?</pre>)", re.DOTALL)


def squeeze(html: str) -> str:
    if "<pre" not in html:
        return _INDENT.sub("\n", html)
    parts = _PRE.split(html)  # odd positions are the <pre> blocks
    return "".join(p if i % 2 else _INDENT.sub("\n", p) for i, p in enumerate(parts))


def _render(template: str, context: dict[str, Any]) -> str:
    return render_to_string(template, {**FORM_RULES, **context})


def send_html(html: str, *, counters: bool = False) -> None:
    """Push `html` to every open console; with `counters`, the top bar's counts go along.

    On the broadcaster thread the html joins that thread's next message, and the counts are
    read at most every LIVE_COUNTERS_SECONDS (see _Broadcaster); anywhere else both go at once.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        own = getattr(_local, "broadcaster", None)
        if own is not None:
            own.add(html, counters=counters)
        else:
            if counters:
                html += counters_html()
            async_to_sync(layer.group_send)(GROUP, {"type": "console.html", "html": squeeze(html)})
    except Exception:
        # A Redis outage must not undo or fail a committed change; browsers re-fetch the
        # queue when their socket reconnects.
        logger.warning("live update not sent", exc_info=True)


def proposal_changed(proposal_id: uuid.UUID) -> None:
    proposal = selectors.proposal_detail(proposal_id)
    if proposal is not None:
        _send_proposal(proposal)


def proposal_committed(proposal: Proposal) -> None:
    """A proposal a service just wrote (submitted, approved, rejected, …), rendered from the
    copy that service holds instead of read back.

    Every submission and every decision broadcasts, so these are the commonest updates. If
    the proposal or its execution moved on before the render (an analyst decided, a worker
    took the execution further), it is read back instead. (A move during the render is sent by
    whoever made it, a moment later, as with any live update.)
    """
    execution = selectors.execution_of(proposal)
    written = (proposal.status, proposal.approvals, execution.status if execution else None)
    if selectors.proposal_progress(proposal.pk) != written:
        proposal_changed(proposal.pk)
    else:
        _send_proposal(proposal)


def in_context(cards: list[selectors.Card]) -> list[selectors.Card]:
    """Cards with what surrounds their proposal: its duplicates, the other open proposals on
    its target, and the target's state in the connector. A fixed number of queries for a page
    of cards (the queue page) or one (a live update)."""
    if not cards:
        return cards
    states = connector_state.target_states(
        (c.proposal.action, c.proposal.target_canonical or c.proposal.target, c.proposal.params)
        for c in cards
    )
    return selectors.with_context(cards, states)


def _send_proposal(proposal: Proposal) -> None:
    context: dict[str, Any] = {
        "card": selectors.card_for(proposal),
        "proposal": proposal,
        "rendered_at": selectors.render_stamp(),
    }
    targets = [proposal.target_canonical or proposal.target]
    # A proposal just in, untouched, has nothing new for its detail page (its status, its
    # decisions): the card alone goes out.
    context["detail"] = not (
        proposal.status == ProposalStatus.PENDING
        and not proposal.approvals
        and proposal.escalated_at is None
    )
    if proposal.status == ProposalStatus.PENDING:
        context["placement"] = placement_of(proposal)
    else:
        context["fills"] = fills()
        targets += [
            f.card.proposal.target_canonical or f.card.proposal.target for f in context["fills"]
        ]
    send_html(_render("approvals/live.html", context), counters=True)
    # The card's context (its duplicates, the target's other open proposals and state) follows
    # in a message of its own: the card itself is not delayed by those reads. A pending card
    # whose context is empty needs none: the card went out without one.
    pending = proposal.status == ProposalStatus.PENDING
    publish(context_changed, targets, [(proposal.action, targets[0])], pending)


def context_changed(
    targets: list[str], pairs: list[tuple[str, str]], unless_empty: bool = False
) -> None:
    """Render, once for every console, the context of each action open on these targets, and
    of `pairs` (a pair with nothing left open gets an empty context, which ends its group).
    With `unless_empty`, nothing is sent when every context is empty: each message goes to
    every console, and most new proposals have nothing around them."""
    found = selectors.open_on_targets(targets)
    wanted = found.pairs() | set(pairs)
    states = connector_state.target_states((a, t, found.params((a, t))) for a, t in wanted)
    contexts = [found.context(action, target, states) for action, target in sorted(wanted)]
    if unless_empty and all(ctx.empty for ctx in contexts):
        return
    stamp = selectors.render_stamp()
    send_html(
        "".join(
            _render("approvals/context_live.html", {"ctx": ctx, "rendered_at": stamp})
            for ctx in contexts
        )
    )


def counters_html() -> str:
    return render_to_string(
        "approvals/counters.html",
        {
            "counters": selectors.queue_counters(),
            "page_size": settings.QUEUE_PAGE_SIZE,
            "oob": True,
        },
    )


def agent_changed(agent_id: int) -> None:
    """An agent was suspended or resumed: its cards on the page are drawn again (the
    suspended badge, no approve control), and the queue's notice of suspended agents."""
    for proposal in selectors.proposals_with_details().filter(
        pk__in=selectors.pending_on_page_of(agent_id)
    ):
        _send_proposal(proposal)
    send_html(suspended_notice_html())


def suspended_notice_changed() -> None:
    send_html(suspended_notice_html(), counters=True)


def suspended_notice_html() -> str:
    return _render(
        "approvals/suspended_notice.html",
        {"suspended_agents": selectors.suspended_agents_pending(), "oob": True},
    )


def grant_demoted(data: dict[str, Any], seq: int) -> None:
    """A grant lost its autonomy (approvals.services.demotion): a notice on every console."""
    send_html(
        render_to_string(
            "approvals/demotion_notice.html",
            {"d": data, "seq": seq, "why": demotion.in_words(data)},
        )
    )


def stop_changed() -> None:
    send_html(
        render_to_string(
            "approvals/stop.html",
            # The control goes to everyone; pages without one (analysts') drop it unswapped,
            # and the server refuses the stop to anyone who is not a manager or admin.
            {"emergency_stop": selectors.emergency_stop(), "oob": True, "can_stop": True},
        )
    )


class _Broadcaster(background.QueueThread):
    """Renders and sends live updates on a thread of its own, in commit order.

    The request or task that committed the change answers without waiting for the render and
    the Redis round trip; the thread keeps one event loop, so the channel layer's Redis
    connection is reused instead of being set up for every message. Each update is sent as
    soon as it is rendered.

    The top bar's counts take one pass over the pending proposals, so their cost grows with
    the queue. They are read at most every LIVE_COUNTERS_SECONDS: the first update after a
    quiet spell carries fresh counts, and updates within the interval are followed, once it
    has passed, by one message with the counts as they are then (a failed read is retried at
    the next interval).
    """

    name = "live-updates"

    def __init__(self) -> None:
        super().__init__()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = threading.Condition()
        self._started()

    def _started(self) -> None:
        self._outstanding = 0
        self._parts: list[str] = []
        self._counters_wanted = False
        self._counters_owed = False  # wanted within the interval: sent when it has passed
        self._counters_at = -math.inf

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._ensure_started()  # before counting: a fresh thread starts from zero
        with self._idle:
            self._outstanding += 1
        self._queue.put((fn, args))

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything submitted so far has been sent, counts owed included (or
        the timeout passes)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout=timeout)

    def add(self, html: str, *, counters: bool) -> None:
        self._parts.append(html)
        self._counters_wanted = self._counters_wanted or counters

    def send(self, html: str) -> None:
        layer = get_channel_layer()
        if layer is None or self._loop is None:
            return
        self._loop.run_until_complete(
            layer.group_send(GROUP, {"type": "console.html", "html": squeeze(html)})
        )

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        _local.broadcaster = self
        while True:
            taken = 0
            owed_change = 0
            try:
                item = self._take()
                if item is not None:
                    taken = 1
                    fn, args = item
                    try:
                        fn(*args)
                    except Exception:
                        logger.warning("live update not sent", exc_info=True)
                owed_change = self._flush()
                if self._queue.empty():
                    connections.close_all()  # this thread's connections only
            except Exception:  # the thread must outlive any one update
                self._parts = []
                logger.warning("live update not sent", exc_info=True)
            with self._idle:
                # Owed counts count as outstanding, so that wait_idle waits for them too.
                self._outstanding += owed_change - taken
                self._idle.notify_all()

    def _take(self) -> tuple[Callable[..., None], tuple[Any, ...]] | None:
        """The next update in the queue; None when owed counts fall due first."""
        timeout = None
        if self._counters_owed:
            timeout = max(self._counters_at + settings.LIVE_COUNTERS_SECONDS - time.monotonic(), 0)
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _flush(self) -> int:
        """Send what the update rendered, with the counts if due. Returns +1 when counts became
        owed, -1 when owed counts went out, else 0."""
        owed_before = self._counters_owed
        if self._counters_wanted or self._counters_owed:
            now = time.monotonic()
            self._counters_wanted = False
            self._counters_owed = True
            if now - self._counters_at >= settings.LIVE_COUNTERS_SECONDS:
                self._counters_at = now
                try:
                    self._parts.append(counters_html())
                    self._counters_owed = False
                except Exception:
                    logger.warning("live counters not read; trying again shortly", exc_info=True)
        parts, self._parts = self._parts, []
        if parts:
            try:
                self.send("".join(parts))
            except Exception:
                # A Redis outage must not undo or fail a committed change; browsers re-fetch
                # the queue when their socket reconnects.
                logger.warning("live update not sent", exc_info=True)
        return int(self._counters_owed) - int(owed_before)


_local = threading.local()
_broadcaster = _Broadcaster()


def publish(fn: Callable[..., None], *args: Any) -> None:
    """Run a live update (proposal_changed, stop_changed) after commit, off the caller's path."""
    if settings.LIVE_UPDATES_IN_BACKGROUND:
        _broadcaster.submit(fn, *args)
    else:
        fn(*args)


def wait_idle(timeout: float = 5.0) -> bool:
    """Wait until this process's queued live updates have gone out (tests, shutdown)."""
    return _broadcaster.wait_idle(timeout)
