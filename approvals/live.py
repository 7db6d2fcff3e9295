"""Live updates: after a service commits, render the changed pieces and push them to every
open console over the channel layer. The htmx ws extension swaps them in out-of-band.

The server keeps the queue page in order, not the browser: a card that enters the page
comes with the cards it goes before, the cards it pushes below the page are deleted, and a
card that leaves brings in the ones that move up onto the page. Each is computed and
rendered once per change, for every console alike (every console shows the same page: the
QUEUE_PAGE_SIZE highest-priority pending proposals).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string

from agents import demotion

from . import connector_state, selectors
from .broadcaster import GROUP, Broadcaster, broadcasting
from .models import MAX_TEXT, MIN_REASON, Proposal, ProposalStatus
from .placement import fills, placement_of

logger = logging.getLogger(__name__)

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
    read at most every LIVE_COUNTERS_SECONDS (approvals.broadcaster); elsewhere both go at once.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        own = broadcasting()
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


def proposal_changed(proposal_id: uuid.UUID, *, left_queue: bool = True) -> None:
    proposal = selectors.proposal_detail(proposal_id)
    if proposal is not None:
        _send_proposal(proposal, left_queue=left_queue)


def execution_changed(proposal_id: uuid.UUID) -> None:
    """Its execution moved: the card left the queue at the decision, so no card moves up onto
    the page now; the detail page's parts and the target's context go out."""
    proposal_changed(proposal_id, left_queue=False)


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
    ahead = None
    if proposal.status == ProposalStatus.PENDING:
        # Where its card goes starts with the same statement (approvals.placement).
        progress, ahead = selectors.proposal_progress_ahead(proposal.pk, settings.QUEUE_PAGE_SIZE)
    else:
        progress = selectors.proposal_progress(proposal.pk)
    if progress != written:
        proposal_changed(proposal.pk)
    else:
        _send_proposal(proposal, ahead)


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


# The statuses a proposal reaches from the queue: when one of them is new, the card has just left
# and the cards below it may move up onto the page.
_FROM_THE_QUEUE = frozenset(
    (
        ProposalStatus.APPROVED,
        ProposalStatus.REJECTED,
        ProposalStatus.EXPIRED,
        ProposalStatus.WITHDRAWN,
    )
)


def _send_proposal(
    proposal: Proposal, ahead: int | None = None, *, left_queue: bool = True
) -> None:
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
        if ahead is None:  # read back after a move: the count was not taken with it
            ahead = selectors.proposal_progress_ahead(proposal.pk, settings.QUEUE_PAGE_SIZE)[1]
        context["placement"] = placement_of(proposal, ahead)
    else:
        # Only a card that was on the queue leaves a place: not a proposal that never waited
        # (auto-approved, blocked, advisory), nor its execution's progress later on.
        context["fills"] = fills() if left_queue and proposal.status in _FROM_THE_QUEUE else []
        targets += [
            f.card.proposal.target_canonical or f.card.proposal.target for f in context["fills"]
        ]
    send_html(_render("approvals/live.html", context), counters=True)
    # The card's context (its duplicates, the target's other open proposals and state) follows
    # in a message of its own: the card itself is not delayed by those reads. A pending card
    # whose context is empty needs none: the card went out without one.
    pending = proposal.pk if proposal.status == ProposalStatus.PENDING else None
    publish_context(ContextChange(tuple(targets), ((proposal.action, targets[0]),), pending))


@dataclass(frozen=True)
class ContextChange:
    """The contexts a change touched: of each action open on `targets`, and of `pairs` (a pair
    with nothing left open gets an empty context, which ends its group on the pages).

    `pending` is a proposal still pending whose card just went out (`pairs` holds its action
    and target): it needs no message when everything around it is empty, since each message
    goes to every console and most new proposals have nothing around them.
    """

    targets: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    pending: uuid.UUID | None = None


def contexts_changed(changes: list[ContextChange]) -> None:
    """Render the contexts these changes touched, once for every console, in one message."""
    contexts = touched_contexts(changes)
    if not contexts:
        return
    stamp = selectors.render_stamp()
    send_html(
        "".join(
            _render("approvals/context_live.html", {"ctx": ctx, "rendered_at": stamp})
            for ctx in contexts
        )
    )


def touched_contexts(changes: list[ContextChange]) -> list[selectors.CardContext]:
    """The contexts these changes touched that the consoles need.

    They share one read of what is open on their targets and one of the connectors' states.
    Arrivals alone (a storm, or a quiet moment's one new card) look first which of their
    targets have anything around them (selectors.anything_around): most are alone on their
    target and need nothing more. Decisions alone look first whether anything is left open on
    their targets at all.
    """
    targets = list(dict.fromkeys(t for c in changes for t in c.targets))
    decisions = any(c.pending is None for c in changes)
    if not decisions:
        # An arrival only adds to what is there: a target with nothing around its new
        # proposals has an empty context, which changes nothing on the pages.
        targets = selectors.anything_around(pair for c in changes for pair in c.pairs)
        if not targets:
            return []
    found = selectors.open_on_targets(targets, look_first=all(c.pending is None for c in changes))
    wanted = found.pairs() | {pair for c in changes for pair in c.pairs if pair[1] in targets}
    # A target's state in its connector shows on the pending cards of its pairs: a pair with
    # none left (a decision's own, mostly) goes without it.
    states = connector_state.target_states((a, t, found.params((a, t))) for a, t in found.pairs())
    # A decision may end a group or shrink it, so every context on its targets goes; an
    # arrival only adds to what is there, so an empty context on its target changes nothing.
    decided = {target for c in changes if c.pending is None for target in c.targets}
    every = [(target, found.context(action, target, states)) for action, target in sorted(wanted)]
    return [context for target, context in every if target in decided or not context.empty]


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


# Renders on a thread of its own; what it renders besides the updates it is given comes from here.
_broadcaster = Broadcaster(counters=counters_html, contexts=contexts_changed, send=squeeze)


def publish(fn: Callable[..., None], *args: Any) -> None:
    """Run a live update (proposal_changed, stop_changed) after commit, off the caller's path."""
    if settings.LIVE_UPDATES_IN_BACKGROUND:
        _broadcaster.submit(fn, *args)
    else:
        fn(*args)


def publish_context(change: ContextChange) -> None:
    """Send the contexts a change touched, with the others collected in the same moment."""
    if settings.LIVE_UPDATES_IN_BACKGROUND:
        _broadcaster.submit_context(change)
    else:
        contexts_changed([change])


def wait_idle(timeout: float = 5.0) -> bool:
    """Wait until this process's queued live updates have gone out (tests, shutdown)."""
    return _broadcaster.wait_idle(timeout)
