"""Work lists: held and failed executions, actions that ran without approval, the Advisory and
Blocked pages."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_POST

from soc_console import dates, roles
from soc_console.errors import DomainError, InvalidInput

from .. import selectors, services
from ..models import ProposalStatus
from .common import analyst_step, console_role


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


retry_execution = analyst_step(services.execution_retry, "Retry queued: a new attempt runs now.")
acknowledge_execution = analyst_step(
    services.execution_acknowledge,
    "Acknowledged: it stays failed and leaves the list.",
    text="note",
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
    refused = dates.out_of_range(day)
    if refused:
        raise InvalidInput(f"{label}: {refused}", errors={field: [refused]})
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
