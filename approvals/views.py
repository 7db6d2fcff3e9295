"""The analysts' console: thin views over selectors (reads) and services (changes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh, trigger_client_event

from agents import catalogue
from agents.models import Agent, Criticality
from soc_console import roles
from soc_console.errors import DomainError, InvalidInput

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
        "suspended_agents": selectors.suspended_agents_pending(),
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
    auto = list(selectors.unreviewed_auto()[:200])
    return render(
        request,
        "approvals/lists.html",
        {
            "held": selectors.held_executions()[:200],
            "auto": auto,
            # The rows "Confirm all shown" confirms: those on the page still unconfirmed.
            "auto_waiting": [p for p in auto if p.reviewed_at is None],
            "failed": selectors.failed_executions()[:200],
            "acknowledged": selectors.failed_executions(acknowledged=True)[:20],
            "flagged": selectors.flagged_proposals()[:200],
        },
    )


@require_POST
@console_role(roles.can_decide)
def confirm_review_bulk(request: HttpRequest) -> HttpResponse:
    """Confirm the selected rows of "ran without approval", or every row the page showed.

    "All" means the rows the analyst had in front of them (the page sends their ids), never
    whatever has run since. Always answered with a reload of the list and its summary.
    """
    field = "shown" if request.POST.get("scope") == "shown" else "proposal"
    try:
        summary = services.proposals_review_confirm(
            proposal_ids=request.POST.getlist(field),
            analyst=request.user,
            note=request.POST.get("note", ""),
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        if summary.confirmed:
            messages.success(request, f"Confirmed {len(summary.confirmed)}.")
        if summary.refused:
            why = "; ".join(f"{r.what}: {r.why}" for r in summary.refused)
            messages.error(request, f"Refused {len(summary.refused)}: {why}")
    return redirect(f"{reverse('lists')}#ran-without-approval")


@require_POST
@console_role(roles.can_decide)
def retry_execution(request: HttpRequest, execution_id: str) -> HttpResponse:
    return _run(
        request,
        lambda: services.execution_retry(execution_id=execution_id, analyst=request.user),
        "Retry queued: a new attempt runs now.",
        refresh=True,
    )


@require_POST
@console_role(roles.can_decide)
def acknowledge_execution(request: HttpRequest, execution_id: str) -> HttpResponse:
    return _run(
        request,
        lambda: services.execution_acknowledge(
            execution_id=execution_id, analyst=request.user, note=request.POST.get("note", "")
        ),
        "Acknowledged: it stays failed and leaves the list.",
        refresh=True,
    )


# The Advisory and Blocked pages: routing outcomes kept from the queue, read with filters.
ROUTED_PAGES = {
    "advisory": (
        ProposalStatus.ADVISORY,
        "Advisory",
        "Level-1 proposals: recorded for the analysts to read, never queued, never executed.",
    ),
    "blocked": (
        ProposalStatus.BLOCKED,
        "Blocked",
        "Proposals a guardrail refused (the stop, a suspension, no grant, out of scope, "
        "missing evidence): never queued, never executed.",
    ),
}
ROUTED_PAGE_SIZE = 50


def _day(raw: str, *, field: str, label: str) -> date | None:
    if not raw:
        return None
    try:
        day = parse_date(raw)
    except ValueError:  # well formed, but no such day (2025-02-30)
        day = None
    if day is None:
        raise InvalidInput(
            f"{label}: {raw[:40]!r} is not a date (YYYY-MM-DD).",
            errors={field: ["A date, YYYY-MM-DD."]},
        )
    return day


def _routed_filters(request: HttpRequest, choices: dict[str, Any]) -> selectors.RoutedFilters:
    """The page's filters from the query string; a value that cannot be read is refused with
    InvalidInput naming its field, and nothing is listed."""
    get = request.GET
    picked: dict[str, str | None] = {}
    reasons = {code for code, _ in choices["reasons"] if code}
    reasons |= {explanation for _, explanation in choices["reasons"]}
    for name, label, allowed in (
        ("agent", "Agent", set(choices["agents"])),
        ("action", "Action", set(choices["actions"])),
        ("reason", "Reason", reasons),
    ):
        value = get.get(name) or None
        if value is not None and value not in allowed:
            raise InvalidInput(
                f"{label}: there is no {name} {value[:60]!r} here.",
                errors={name: ["Pick one from the list."]},
            )
        picked[name] = value
    since = _day(get.get("since", ""), field="since", label="From")
    until = _day(get.get("until", ""), field="until", label="To")
    if since and until and since > until:
        raise InvalidInput(
            "To: the end of the period comes before its start.",
            errors={"until": ["On or after the start."]},
        )
    zone = timezone.get_current_timezone()

    def start_of(day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=zone)

    return selectors.RoutedFilters(
        **picked,
        since=start_of(since) if since else None,
        # A day picked as "to" means through the end of that day.
        until=start_of(until) + timedelta(days=1) if until else None,
    )


def _routed_page(request: HttpRequest, kind: str) -> HttpResponse:
    status, title, help_text = ROUTED_PAGES[kind]
    choices = selectors.routed_choices(status=status)
    context: dict[str, Any] = {
        "kind": kind,
        "title": title,
        "help_text": help_text,
        "choices": choices,
        "values": request.GET,
    }
    try:
        filters = _routed_filters(request, choices)
    except InvalidInput as exc:
        context.update(problem=exc.detail, errors=exc.extra.get("errors", {}))
        return render(request, "approvals/routed.html", context, status=400)
    rows = selectors.routed_proposals(status=status, filters=filters)
    page = Paginator(rows, ROUTED_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context.update(page=page, query=query.urlencode())
    return render(request, "approvals/routed.html", context)


@require_GET
@console_role()
def advisory_page(request: HttpRequest) -> HttpResponse:
    return _routed_page(request, "advisory")


@require_GET
@console_role()
def blocked_page(request: HttpRequest) -> HttpResponse:
    return _routed_page(request, "blocked")


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
    pending = selectors.pending_by_agent()
    rows = [
        {
            "agent": agent,
            "pending": pending.get(agent.pk, 0),
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
def agent_clear(request: HttpRequest, slug: str) -> HttpResponse:
    """Reject (a manager: withdraw) every pending proposal of the agent with one reason."""
    agent = get_object_or_404(Agent, slug=slug)
    try:
        report = services.agent_pending_clear(
            agent=agent, by=request.user, reason=request.POST.get("reason", "")
        )
    except DomainError as exc:
        return _flash(request, ok=False, text=exc.detail, status=200 if request.htmx else 302)
    plural = "s" if report.cleared != 1 else ""
    text = f"{report.cleared} pending proposal{plural} of {slug} cleared."
    if report.refused:
        first = next(iter(report.refused.values()))
        text += f" {len(report.refused)} refused (for example: {first})"
    return _flash(request, ok=True, text=text)


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
