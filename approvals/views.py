"""The analysts' console: thin views over selectors (reads) and services (changes)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh, trigger_client_event

from agents import catalogue
from agents.models import Agent, Criticality
from soc_console import roles
from soc_console.errors import DomainError

from . import live, selectors, services
from .models import ProposalStatus

# The event (HX-Trigger) that answers a decision or an undo; console.js listens for it.
ANSWERED = "console:answered"


def console_role(check: Callable[[Any], bool] = roles.can_view_console) -> Callable:
    """Sign-in plus a role check on the server, whatever the page shows or hides."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied("Your role does not allow this.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _flash(
    request: HttpRequest,
    *,
    ok: bool,
    text: str,
    status: int = 200,
    outcome: str = "",
    field: str = "",
    undo: dict[str, Any] | None = None,
) -> HttpResponse:
    """An htmx request gets the message as a fragment; a plain form post gets a redirect.

    With the fragment goes the ANSWERED event (HX-Trigger), which the page's script reads
    instead of the message: `outcome` says whether the card is finished ("decided") or still
    waits for another approver ("partial"), so it removes only what really left the queue;
    `field` names the input the server refused (the page puts the cursor there); `at` is the
    server's clock, so that an older copy of a decided card never brings it back. `undo` adds
    an approval's undo button with its countdown.
    """
    if request.htmx:
        rendered_at = selectors.render_stamp()
        response = render(
            request,
            "approvals/flash.html",
            {"ok": ok, "text": text, "undo": undo},
            status=status,
        )
        return trigger_client_event(
            response, ANSWERED, {"ok": ok, "outcome": outcome, "field": field, "at": rendered_at}
        )
    (messages.success if ok else messages.error)(request, text)
    return redirect(_safe_next(request))


def _safe_next(request: HttpRequest) -> str:
    # Only ever bounce back inside the console: `next` and Referer come from the browser.
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or reverse("queue")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("queue")


def _run(
    request: HttpRequest, action: Callable[[], Any], success: str, *, refresh: bool = False
) -> HttpResponse:
    """Call a service and say how it went. `refresh` reloads the page after a success, for
    controls whose own state changed (a rolled-back execution offers no second rollback)."""
    try:
        action()
    except DomainError as exc:
        return _flash(request, ok=False, text=exc.detail, status=200 if request.htmx else 302)
    if refresh and request.htmx:
        messages.success(request, success)  # shown by the reloaded page
        response = HttpResponseClientRefresh()
        response.status_code = 204  # as before: nothing to swap, the page reloads
        return response
    return _flash(request, ok=True, text=success)


def _what(proposal: Any) -> str:
    kind = catalogue.get(proposal.action)
    return f"{kind.label if kind else proposal.action} {proposal.target}"


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
    return (
        selectors.QueueFilter(
            agent=query.get("agent", "").strip()[:64],
            action=action,
            target=query.get("target", "").strip()[:255],
            severity=severity,
            escalated=query.get("escalated") == "1",
            awaiting_senior=query.get("awaiting_senior") == "1",
        ),
        errors,
    )


@require_GET
@console_role()
def queue(request: HttpRequest) -> HttpResponse:
    filters, filter_errors = _queue_filter(request)
    context = {
        "cards": live.in_context(selectors.pending_queue(filters=filters)),
        "filters": filters,
        "filter_errors": filter_errors,
        "agent_slugs": list(Agent.objects.order_by("slug").values_list("slug", flat=True)),
        "actions": catalogue.ACTIONS.values(),
        "severities": Criticality.values,
        "counters": selectors.queue_counters(),
        "page_size": settings.QUEUE_PAGE_SIZE,
        "rendered_at": selectors.render_stamp(),
    }
    template = "approvals/queue.html#queue" if request.htmx else "approvals/queue.html"
    return render(request, template, context)


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
    try:
        if verdict == "approve":
            proposal = services.proposal_approve(
                proposal_id=proposal_id,
                analyst=request.user,
                reason=reason,
                seconds_on_card=seconds,
            )
        elif verdict == "reject":
            proposal = services.proposal_reject(
                proposal_id=proposal_id,
                analyst=request.user,
                reason=reason,
                seconds_on_card=seconds,
            )
        else:
            return _flash(request, ok=False, text="Choose approve or reject.")
    except DomainError as exc:
        # The loser of a race learns who decided ("Already approved by bob."); a refused field
        # (a rejection without its reason) is named, so the page can put the cursor there.
        field = next(iter(exc.extra.get("errors") or {}), "")
        return _flash(
            request,
            ok=False,
            text=exc.detail,
            status=200 if request.htmx else 302,
            field=field,
        )
    if proposal.status == ProposalStatus.PENDING:
        card = selectors.card_for(proposal)
        who = "a senior analyst" if card.needs_senior else "another analyst"
        text = (
            f"Your approval of {_what(proposal)} is recorded "
            f"({proposal.approvals} of {proposal.required_approvals}); "
            f"it now needs {who}."
        )
        return _flash(request, ok=True, text=text, outcome="partial")
    undo = None
    seconds_left = selectors.undo_seconds_left(proposal)
    if seconds_left:
        undo = {"proposal_id": proposal.pk, "what": _what(proposal), "seconds": seconds_left}
    if proposal.status == ProposalStatus.APPROVED and selectors.emergency_stop():
        text = (
            f"Approved: {_what(proposal)}. The emergency stop is on: it is held until the stop "
            "is lifted and it is re-confirmed."
        )
    elif proposal.status == ProposalStatus.APPROVED and undo:
        text = (
            f"Approved: {_what(proposal)}. It runs in {settings.APPROVAL_UNDO_SECONDS:g} s "
            "unless you undo it."
        )
    elif proposal.status == ProposalStatus.APPROVED:
        text = f"Approved: {_what(proposal)}. It is queued to run."
    else:
        text = f"Rejected: {_what(proposal)}."
    return _flash(request, ok=True, text=text, outcome="decided", undo=undo)


@require_POST
@console_role(roles.can_decide)
def undo_approval(request: HttpRequest, proposal_id: str) -> HttpResponse:
    """The undo button of an approval's toast, within APPROVAL_UNDO_SECONDS."""
    try:
        proposal = services.approval_undo(proposal_id=proposal_id, analyst=request.user)
    except DomainError as exc:
        return _flash(
            request,
            ok=False,
            text=exc.detail,
            status=200 if request.htmx else 302,
        )
    return _flash(
        request,
        ok=True,
        text=f"Approval undone: {_what(proposal)} is pending again; nothing ran.",
        outcome="undone",
    )


@require_GET
@console_role()
def proposal_page(request: HttpRequest, proposal_id: str) -> HttpResponse:
    proposal = selectors.proposal_detail(proposal_id)
    if proposal is None:
        raise Http404("No such proposal.")
    card = selectors.card_for(proposal)
    if proposal.status == ProposalStatus.PENDING:
        card = live.in_context([card])[0]
    return render(
        request,
        "approvals/proposal.html",
        {
            "card": card,
            "proposal": proposal,
            "timeline": selectors.proposal_timeline(proposal.pk),
            "reversible": bool(card.action and card.action.reversible),
            # decisions are prefetched: no query. The server refuses a second decision anyway;
            # this only spares the analyst buttons that cannot work.
            "decided_by_me": any(d.analyst_id == request.user.pk for d in proposal.decisions.all()),
        },
    )


@require_POST
@console_role(roles.can_decide)
def rollback(request: HttpRequest, proposal_id: str) -> HttpResponse:
    return _run(
        request,
        lambda: services.rollback_request(
            proposal_id=proposal_id, analyst=request.user, reason=request.POST.get("reason", "")
        ),
        "Rollback requested.",
        refresh=True,
    )


@require_POST
@console_role(roles.can_decide)
def confirm_review(request: HttpRequest, proposal_id: str) -> HttpResponse:
    return _run(
        request,
        lambda: services.proposal_review_confirm(
            proposal_id=proposal_id, analyst=request.user, note=request.POST.get("note", "")
        ),
        "Confirmed.",
        refresh=True,
    )


@require_POST
@console_role(roles.can_decide)
def reconfirm_held(request: HttpRequest, execution_id: str) -> HttpResponse:
    return _run(
        request,
        lambda: services.execution_reconfirm_held(execution_id=execution_id, analyst=request.user),
        "Re-confirmed: it runs now.",
        refresh=True,
    )


@require_GET
@console_role()
def work_lists(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "approvals/lists.html",
        {
            "held": selectors.held_executions()[:200],
            "auto": selectors.unreviewed_auto()[:200],
            "failed": selectors.failed_executions()[:200],
            "flagged": selectors.flagged_proposals()[:200],
        },
    )


@require_POST
@console_role(roles.can_stop)
def emergency_stop(request: HttpRequest) -> HttpResponse:
    reason = request.POST.get("reason", "")
    if request.POST.get("engage") == "1":
        return _run(
            request,
            lambda: services.emergency_stop_engage(by=request.user, reason=reason),
            "Emergency stop engaged: nothing runs until it is lifted.",
        )
    return _run(
        request,
        lambda: services.emergency_stop_release(by=request.user, reason=reason),
        "Emergency stop lifted. Held executions wait for re-confirmation.",
    )


@require_GET
@console_role()
def agents_page(request: HttpRequest) -> HttpResponse:
    agents = Agent.objects.prefetch_related("keys", "policies__grants").order_by("slug")
    records = selectors.agent_track_records()
    rows = [
        {
            "agent": agent,
            "policy": agent.current_policy,
            "keys": list(agent.keys.all()),
            "record": records.get(agent.pk),
        }
        for agent in agents
    ]
    return render(
        request,
        "approvals/agents.html",
        {
            "rows": rows,
            "actions": catalogue.ACTIONS,
            "can_suspend": roles.can_suspend_agent(request.user),
            "can_resume": roles.can_stop(request.user),
        },
    )


@require_POST
@console_role(roles.can_suspend_agent)
def agent_suspend(request: HttpRequest, slug: str) -> HttpResponse:
    agent = get_object_or_404(Agent, slug=slug)
    if request.POST.get("suspend") == "1":
        return _run(
            request,
            lambda: services.agent_suspend(
                agent=agent, by=request.user, reason=request.POST.get("reason", "")
            ),
            f"{agent.slug} suspended.",
            refresh=True,
        )
    return _run(
        request,
        lambda: services.agent_resume(agent=agent, by=request.user),
        f"{slug} resumed.",
        refresh=True,
    )


@require_POST
@console_role(roles.can_decide)
def bulk_decide(request: HttpRequest) -> HttpResponse:
    """Approve or reject the selected cards (or a duplicate group) with one note or reason;
    each is decided on its own and the answer says which were refused, and why."""
    try:
        summary = services.proposals_decide_bulk(
            proposal_ids=request.POST.getlist("proposals"),
            analyst=request.user,
            verdict=request.POST.get("verdict", ""),
            reason=request.POST.get("reason", ""),
        )
    except DomainError as exc:
        field = next(iter(exc.extra.get("errors") or {}), "")
        return _flash(
            request, ok=False, text=exc.detail, status=200 if request.htmx else 302, field=field
        )
    if not request.htmx:
        (messages.success if not summary.refused else messages.warning)(request, summary.as_text())
        return redirect(_safe_next(request))
    response = render(request, "approvals/bulk_summary.html", {"summary": summary})
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
