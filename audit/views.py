from __future__ import annotations

import csv
import json
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from approvals.views import console_role
from soc_console import roles

from . import charts, exports, reports, selectors
from .filters import BadFilter, moment, proposal_id
from .log import verification_is_genuine, verify_and_record
from .models import VerificationRun


def _bad_filter(exc: BadFilter) -> HttpResponse:
    return HttpResponse(f"Bad filter: {exc}", status=400, content_type="text/plain")


def _filters(request: HttpRequest) -> dict:
    return {
        "actor": request.GET.get("actor") or None,
        "event_type": request.GET.get("event_type") or None,
        "proposal_id": proposal_id(request.GET.get("proposal")),
        "since": moment(request.GET.get("since")),
        "until": moment(request.GET.get("until")),
        # Jump to an event (the first bad one after a failed verification) by its number.
        "upto_seq": int(upto) if (upto := request.GET.get("upto", "")).isdigit() else None,
    }


def _bad_seqs(run: VerificationRun | None) -> set[int]:
    """The events a failed verification named, to mark them in the table."""
    if run is None or run.ok or not isinstance(run.problems, list):
        return set()
    return {p["seq"] for p in run.problems if isinstance(p, dict) and isinstance(p.get("seq"), int)}


@require_GET
@console_role(roles.can_read_reports)
def audit_page(request: HttpRequest) -> HttpResponse:
    try:
        filters = _filters(request)
    except BadFilter as exc:
        return _bad_filter(exc)
    events = selectors.audit_events(**filters).order_by("-seq")
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    verification = selectors.last_verification()
    genuine = verification is not None and verification_is_genuine(verification)
    return render(
        request,
        "audit/audit.html",
        {
            "page": page,
            "head": selectors.chain_head(),
            "verification": verification,
            "verification_genuine": genuine,
            "bad_seqs": _bad_seqs(verification) if genuine else set(),
            "event_types": selectors.event_types(),
            "query": query.urlencode(),
            "filters": request.GET,
        },
    )


@require_GET
@console_role(roles.can_read_reports)
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    try:
        filters = _filters(request)
    except BadFilter as exc:
        return _bad_filter(exc)
    events = selectors.audit_events(**filters).order_by("seq")
    response = StreamingHttpResponse(
        (json.dumps(line) + "\n" for line in exports.jsonl_rows(events)),
        content_type="application/x-ndjson",
    )
    response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
    return response


def _report_filters(request: HttpRequest) -> reports.Filters:
    """The report filters from the query string; anything unreadable falls back to a default."""
    default = reports.Filters.default()
    since = moment(request.GET.get("since")) or default.since
    until = moment(request.GET.get("until"))
    # A date picked as "until" means through the end of that day.
    if until and len(request.GET["until"]) == 10:
        try:
            until = until + timedelta(days=1)
        except OverflowError as exc:
            raise BadFilter(f"{request.GET['until']!r} is too far in the future.") from exc
    if until and since >= until:
        raise BadFilter("the start of the period must come before its end.")
    return reports.Filters(
        since=since,
        until=until or default.until,
        action=request.GET.get("action") or None,
        agent=request.GET.get("agent") or None,
        analyst=request.GET.get("analyst") or None,
        sla_minutes=_number(request.GET.get("sla"), int, default.sla_minutes, 1, 24 * 60),
        threshold=_number(request.GET.get("threshold"), float, default.threshold, 0.0, 1.0),
        scope="reversible" if request.GET.get("scope") == "reversible" else "granted",
    )


def _number(raw: str | None, kind: type, default: Any, low: float, high: float) -> Any:
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        return default
    return value if low <= value <= high else default


def _build_report(request: HttpRequest, name: str) -> tuple[Any, reports.Filters]:
    """The named report under the request's filters: what the page and its CSV both show."""
    build = reports.REPORTS.get(name)
    if build is None:
        raise Http404("Unknown report.")
    filters = _report_filters(request)
    return build(filters), filters


@require_GET
@console_role(roles.can_read_reports)
def reports_page(request: HttpRequest) -> HttpResponse:
    try:
        report, filters = _build_report(request, request.GET.get("report") or "latency")
    except BadFilter as exc:
        return _bad_filter(exc)
    query = request.GET.copy()
    query.pop("report", None)
    return render(
        request,
        "audit/reports.html",
        {
            "report": report,
            "charts": [charts.render(c) for c in [report.chart, *report.extra_charts]],
            "tabs": REPORT_TABS,
            "filters": filters,
            "until_shown": (filters.until - timedelta(seconds=1)).date(),
            "choices": selectors.report_choices(),
            "query": query.urlencode(),
        },
    )


REPORT_TABS = [
    ("latency", "Approval latency"),
    ("fatigue", "Approval fatigue"),
    ("trust", "Agent trust"),
    ("whatif", "Threshold what-if"),
]


@require_GET
@console_role(roles.can_read_reports)
def report_csv(request: HttpRequest, report: str) -> HttpResponse:
    try:
        result, filters = _build_report(request, report)
    except BadFilter as exc:
        return _bad_filter(exc)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{report}.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "report",
            result.title,
            "from",
            filters.since.isoformat(),
            "until",
            filters.until.isoformat(),
        ]
    )
    writer.writerow(["finding", result.finding])
    for row in result.csv_rows():
        writer.writerow(row)
    return response


@require_POST
@console_role(roles.can_read_reports)
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Verify the chain from the browser; the outcome is recorded and shown on the page."""
    result = verify_and_record()
    if result.ok:
        messages.success(request, f"Audit chain intact: {result.events} events.")
    else:
        messages.error(request, f"Audit chain {result.broken_summary()}")
    return redirect("/audit/")
