"""The queue: the page with its filter, the stop banner, deciding one card or several, undoing an
approval."""

from __future__ import annotations

import unicodedata
from dataclasses import replace

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from agents import catalogue
from agents.models import Criticality
from soc_console import roles
from soc_console.errors import AttentionCheckMissed, DomainError

from .. import live, selectors, services
from ..attention import caught_text
from ..models import Proposal, ProposalStatus, listed_agents
from ..selectors import undo_toast, what
from .common import ANSWERED, console_role, flash, safe_next


def _queue_filter(request: HttpRequest) -> tuple[selectors.QueueFilter, list[str]]:
    """The queue's filter from the query string; a value that names nothing is dropped, and
    the page says which and why."""
    query = request.GET
    errors = []
    action = query.get("action", "").strip()
    if action and catalogue.get(action) is None:
        errors.append(f"No action is called {action[:40]!r}; that filter is off.")
        action = ""
    severity = query.get("severity", "").strip()
    if severity and severity not in Criticality.values:
        errors.append(
            f"Severity is one of {', '.join(Criticality.values)}, not {severity[:40]!r}; "
            "that filter is off."
        )
        severity = ""
    # No agent or target holds a control character (and PostgreSQL refuses NUL in a query).
    texts = {}
    for name, limit in (("agent", 64), ("target", 255)):
        value = query.get(name, "").strip()[:limit]
        if any(unicodedata.category(char) == "Cc" for char in value):
            errors.append(f"The {name} holds a control character; that filter is off.")
            value = ""
        texts[name] = value
    return (
        selectors.QueueFilter(
            agent=texts["agent"],
            action=action,
            target=texts["target"],
            severity=severity,
            escalated=query.get("escalated") == "1",
            awaiting_senior=query.get("awaiting_senior") == "1",
        ),
        errors,
    )


def _contexts_rendered(request: HttpRequest, cards: list[selectors.Card]) -> list[selectors.Card]:
    """The cards with their context's parts rendered once per action and target: a storm puts
    dozens of one group's cards on the page, and rendering the same group for each of them
    was about a third of the page's time."""
    # Rendered without the request's context processors (a query each): the parts need only
    # the form rules and the CSRF token of the page.
    base = {**live.FORM_RULES, "csrf_token": get_token(request)}
    rendered: dict[str, tuple[str, str]] = {}
    done = []
    for card in cards:
        ctx = card.context
        if ctx is not None and ctx.key not in rendered:
            facts, group = (
                render_to_string("approvals/card_context.html", {**base, "ctx": ctx, "part": part})
                for part in ("facts", "group")
            )
            rendered[ctx.key] = (facts, group)
        done.append(card if ctx is None else replace(card, context_html=rendered[ctx.key]))
    return done


@require_GET
@console_role()
def queue(request: HttpRequest) -> HttpResponse:
    filters, filter_errors = _queue_filter(request)
    page_size = settings.QUEUE_PAGE_SIZE
    # A filtered page reads one card more than it shows: whether more match than it shows is
    # what its note says. The unfiltered page says so from the top bar's pending count.
    cards = selectors.pending_queue(
        filters=filters, limit=page_size + 1 if filters.active else page_size
    )
    context = {
        "cards": _contexts_rendered(request, live.in_context(cards[:page_size])),
        "more_match": len(cards) > page_size,
        "refresh_seconds": settings.QUEUE_FILTER_REFRESH_SECONDS,
        "suspended_agents": selectors.suspended_agents_pending(),
        "filters": filters,
        "filter_errors": filter_errors,
        "agent_slugs": list(listed_agents().order_by("slug").values_list("slug", flat=True)),
        "actions": catalogue.ACTIONS.values(),
        "severities": Criticality.values,
        "counters": selectors.queue_counters(),
        "page_size": page_size,
        "rendered_at": selectors.render_stamp(),
    }
    if request.htmx:
        return render(request, "approvals/queue.html#queue", context)
    # Approvals of this analyst still in their undo window (made before this page loaded).
    context["undos"] = [
        undo for p in selectors.open_undos(request.user) if (undo := undo_toast(p)) is not None
    ]
    return render(request, "approvals/queue.html", context)


@require_GET
@console_role()
def stop_banner(request: HttpRequest) -> HttpResponse:
    """The banner (and, for managers, the stop control) as they are now: fetched after a
    websocket reconnect, since a stop pulled while the socket was down was never seen."""
    return render(request, "approvals/stop.html", {"oob": False})


@require_POST
@console_role(roles.can_decide)
def decide(request: HttpRequest, proposal_id: str) -> HttpResponse:
    verdict = request.POST.get("verdict")
    reason = request.POST.get("reason", "")
    seconds = request.POST.get("seconds_on_card")
    verdicts = {"approve": services.proposal_approve, "reject": services.proposal_reject}
    if verdict not in verdicts:
        return flash(request, ok=False, text="Choose approve or reject.")
    try:
        proposal = verdicts[verdict](
            proposal_id=proposal_id,
            analyst=request.user,
            reason=reason,
            seconds_on_card=seconds,
        )
    except AttentionCheckMissed as exc:
        # Nothing ran: the card has left the queue, and the analyst reads what it got wrong.
        return flash(
            request,
            ok=False,
            text=exc.detail,
            outcome="decided",
        )
    except DomainError as exc:
        # The loser of a race learns who decided ("Already approved by bob."); a refused field
        # (a rejection without its reason) is named, so the page can put the cursor there.
        field = next(iter(exc.extra.get("errors") or {}), "")
        return flash(
            request,
            ok=False,
            text=exc.detail,
            field=field,
        )
    return _decided(request, proposal)


def _decided(request: HttpRequest, proposal: Proposal) -> HttpResponse:
    """What the analyst reads after their decision, and the undo it offers."""
    if proposal.status == ProposalStatus.PENDING:
        card = selectors.card_for(proposal)
        who = "a senior analyst" if card.needs_senior else "another analyst"
        text = (
            f"Your approval of {what(proposal)} is recorded "
            f"({proposal.approvals} of {proposal.required_approvals}); "
            f"it now needs {who}. Nothing runs before that, so it has no undo; another "
            "analyst's rejection takes it back."
        )
        return flash(request, ok=True, text=text, outcome="partial")
    undo = undo_toast(proposal)
    if proposal.status == ProposalStatus.APPROVED and selectors.emergency_stop():
        text = (
            f"Approved: {what(proposal)}. The emergency stop is on: it is held until the stop "
            "is lifted and it is re-confirmed."
        )
    elif proposal.status == ProposalStatus.APPROVED and undo:
        text = (
            f"Approved: {what(proposal)}. It runs in {settings.APPROVAL_UNDO_SECONDS:g} s "
            "unless you undo it."
        )
    elif proposal.status == ProposalStatus.APPROVED:
        text = f"Approved: {what(proposal)}. It is queued to run."
    elif proposal.synthetic:
        text = caught_text()
    else:
        text = f"Rejected: {what(proposal)}."
    return flash(request, ok=True, text=text, outcome="decided", undo=undo)


@require_POST
@console_role(roles.can_decide)
def undo_approval(request: HttpRequest, proposal_id: str) -> HttpResponse:
    """The undo button of an approval's toast, within APPROVAL_UNDO_SECONDS."""
    try:
        proposal = services.approval_undo(proposal_id=proposal_id, analyst=request.user)
    except DomainError as exc:
        return flash(request, ok=False, text=exc.detail)
    return flash(
        request,
        ok=True,
        text=f"Approval undone: {what(proposal)} is pending again; nothing ran.",
        outcome="undone",
    )


@require_POST
@console_role(roles.can_decide)
def bulk_decide(request: HttpRequest) -> HttpResponse:
    """Approve or reject the selected cards (or a duplicate group) with one note or reason;
    each is decided on its own and the answer says which were refused, and why (and, for a
    group, how many newer ones it left pending)."""
    try:
        if "group" in request.POST:
            # A duplicate group's form names the group as the page read it; the server
            # decides what the page showed of it, never a newer proposal.
            summary = services.proposals_decide_group(
                group=request.POST.get("group", ""),
                analyst=request.user,
                verdict=request.POST.get("verdict", ""),
                reason=request.POST.get("reason", ""),
            )
        else:
            summary = services.proposals_decide_bulk(
                # One id per field (a page from before group forms named their group sent a
                # group's ids in one field, space-separated).
                proposal_ids=[i for v in request.POST.getlist("proposals") for i in v.split()],
                analyst=request.user,
                verdict=request.POST.get("verdict", ""),
                reason=request.POST.get("reason", ""),
            )
    except DomainError as exc:
        field = next(iter(exc.extra.get("errors") or {}), "")
        return flash(request, ok=False, text=exc.detail, field=field)
    if not request.htmx:
        (messages.success if not summary.refused else messages.warning)(request, summary.as_text())
        return redirect(safe_next(request))
    # Each approval still in its undo window gets its toast, as a single approval does.
    approved = [i.proposal_id for i in summary.done if i.status == ProposalStatus.APPROVED]
    undos = [
        undo
        # Oldest first: each goes on top of the tray in turn, so the newest ends up there.
        for proposal in Proposal.objects.select_related("execution")
        .filter(pk__in=approved)
        .order_by("execution__not_before")
        if (undo := undo_toast(proposal)) is not None
    ]
    response = render(request, "approvals/bulk_summary.html", {"summary": summary, "undos": undos})
    return trigger_client_event(
        response,
        ANSWERED,
        {
            "ok": not summary.refused,
            "outcome": "bulk",
            "done": [item.proposal_id for item in summary.done],
            # Approved once, still pending for another approver: their cards stay.
            "partial": [
                item.proposal_id for item in summary.done if item.status == ProposalStatus.PENDING
            ],
            "refused": [item.proposal_id for item in summary.refused],
            "at": selectors.render_stamp(),
        },
    )
