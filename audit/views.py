from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from approvals.models import listed_agents
from approvals.views import console_role
from soc_console import replica, roles

from . import charts, exports, forward, reports, selectors
from .filters import BadFilter, moment, number, one_of, printable, proposal_id
from .models import VerificationRun
from .reports.readiness import readiness
from .verify import verification_is_genuine, verify_and_record

# The audit form's labels, by query parameter.
AUDIT_FIELDS = {
    "actor": "Actor",
    "event_type": "Event type",
    "proposal": "Proposal",
    "since": "From",
    "until": "Until",
    "upto": "Up to event",
}


def _audit_field(name: str, read: Callable[[str | None], Any], raw: str | None) -> Any:
    try:
        return read(raw)
    except BadFilter as exc:
        raise BadFilter(str(exc), field=AUDIT_FIELDS[name], name=name) from exc


def known_event_types() -> set[str]:
    """The event types a filter may name: every type the console records, and any other the
    log holds (a type no longer written, or a test's)."""
    return set(selectors.EVENT_WORDS) | set(selectors.event_types())


def _filters(request: HttpRequest) -> dict:
    """Every filter read the same way: an empty value filters nothing, one that cannot be
    read is refused naming its field (an unknown event type, a control character in a
    name), never an empty list that looks like an answer."""
    get = request.GET
    return {
        "actor": _audit_field("actor", lambda raw: printable(raw, what="actor"), get.get("actor")),
        "event_type": _audit_field(
            "event_type",
            # The log's types are read only when one is asked for.
            lambda raw: one_of(raw, known_event_types(), what="event type") if raw else None,
            get.get("event_type"),
        ),
        "proposal_id": _audit_field("proposal", proposal_id, get.get("proposal")),
        "since": _audit_field("since", moment, get.get("since")),
        "until": _audit_field("until", lambda raw: moment(raw, end=True), get.get("until")),
        # Jump to an event (the first bad one after a failed verification) by its number.
        "upto_seq": _audit_field("upto", number, get.get("upto")),
    }


def _audit_context(request: HttpRequest) -> dict[str, Any]:
    """What the audit page shows whatever its filters: the chain head and last verification."""
    verification = selectors.last_verification()
    genuine = verification is not None and verification_is_genuine(verification)
    return {
        "head": selectors.chain_head(),
        "forwarding": forward.lag(),
        "verification": verification,
        "verification_genuine": genuine,
        "bad_seqs": _bad_seqs(verification) if genuine else set(),
        "event_types": selectors.event_types(),
        "filters": request.GET,
    }


def _bad_filter(request: HttpRequest, exc: BadFilter) -> HttpResponse:
    """The audit page again with the bad input marked and its reason beside it; no events
    are read."""
    return render(
        request,
        "audit/audit.html",
        {
            **_audit_context(request),
            "page": None,
            "invalid": exc.name,
            "field": exc.field or "filter",
            "problem": str(exc),
        },
        status=400,
    )


def _bad_seqs(run: VerificationRun | None) -> set[int]:
    """The events a failed verification named, to mark them in the table."""
    if run is None or run.ok or not isinstance(run.problems, list):
        return set()
    return {p["seq"] for p in run.problems if isinstance(p, dict) and isinstance(p.get("seq"), int)}


def _query_without(request: HttpRequest, name: str) -> str:
    """The page's query string less `name`: for the links (pages, report tabs) that set it."""
    query = request.GET.copy()
    query.pop(name, None)
    return query.urlencode()


@require_GET
@console_role(roles.can_read_reports)
def audit_page(request: HttpRequest) -> HttpResponse:
    try:
        filters = _filters(request)
    except BadFilter as exc:
        return _bad_filter(request, exc)
    events = selectors.audit_events(**filters).order_by("-seq")
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(
        request,
        "audit/audit.html",
        {
            **_audit_context(request),
            "page": page,
            # Each row in words, with a few of its facts; the whole event is on its own page.
            "rows": [
                (e, selectors.event_words(e.event_type), selectors.event_summary(e)) for e in page
            ],
            "query": _query_without(request, "page"),
        },
    )


@require_GET
@console_role(roles.can_read_reports)
def audit_event(request: HttpRequest, seq: int) -> HttpResponse:
    """One event, readable: who, what, when, its data (before and after where known) and its
    place in the chain."""
    detail = selectors.event_detail(seq)
    if detail is None:
        raise Http404("No such event.")
    return render(request, "audit/event.html", {"detail": detail, "e": detail.event})


@require_GET
@console_role(roles.can_read_reports)
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    try:
        filters = _filters(request)
    except BadFilter as exc:
        return _bad_filter(request, exc)
    events = selectors.audit_events(**filters).order_by("seq")
    response = StreamingHttpResponse(
        (json.dumps(line) + "\n" for line in exports.jsonl_rows(events)),
        content_type="application/x-ndjson",
    )
    response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
    return response


# The report form's labels: a bad value is answered naming the field as the form shows it.
REPORT_FIELDS = {
    "since": "From",
    "until": "Until",
    "action": "Action",
    "agent": "Agent",
    "analyst": "Analyst",
    "sla": "SLA (minutes)",
    "threshold": "Auto threshold",
    "scope": "Replay",
}


def _bad(name: str, message: str) -> BadFilter:
    """A refused report filter, named as the form labels it and by its input."""
    return BadFilter(message, field=REPORT_FIELDS[name], name=name)


def _report_filters(request: HttpRequest, choices: dict[str, list[str]]) -> reports.Filters:
    """The report filters from the query string; an empty field takes its default, a value
    that cannot be read is refused (BadFilter naming the field)."""
    get = request.GET
    zone = ZoneInfo(settings.REPORT_TIME_ZONE)
    default = reports.Filters.default()
    since = _field("since", lambda: moment(get.get("since"), zone)) or default.since
    until = _field("until", lambda: moment(get.get("until"), zone, end=True)) or default.until
    if since >= until:
        raise _bad("until", "the start of the period must come before its end.")
    picked = {}
    for name, options in (
        ("action", choices["actions"]),
        ("agent", choices["agents"]),
        ("analyst", choices["analysts"]),
    ):
        value = get.get(name) or None
        if value is not None and value not in options:
            raise _bad(name, f"there is no {name} {value!r}.")
        picked[name] = value
    scope = get.get("scope") or "granted"
    if scope not in ("granted", "reversible"):
        raise _bad("scope", f"{scope!r} is neither 'granted' nor 'reversible'.")
    return reports.Filters(
        since=since,
        until=until,
        sla_minutes=_number(get, "sla", int, default.sla_minutes, 1, 24 * 60),
        threshold=_number(get, "threshold", float, default.threshold, 0.0, 1.0),
        scope=scope,
        **picked,
    )


def _field(name: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except BadFilter as exc:
        raise _bad(name, str(exc)) from exc


def _number(get: Any, name: str, kind: type, default: Any, low: float, high: float) -> Any:
    raw = get.get(name)
    if raw is None or raw == "":
        return default
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        value = None
    # NaN fails both comparisons, so it is refused as well.
    if value is None or not low <= value <= high:
        raise _bad(name, f"{raw!r} is not {what} from {low:g} to {high:g}.")
    return value


def _report_problem(request: HttpRequest, name: str, exc: BadFilter) -> HttpResponse:
    """A filter that cannot be read, answered inside the layout: the form again as it was
    sent, the bad input marked and its reason beside it. No report is computed."""
    name = name if name in reports.REPORTS else "latency"
    get = request.GET
    values = {field: get.get(field, "") for field in REPORT_FIELDS}
    return render(
        request,
        "audit/report_problem.html",
        {
            "field": exc.field or "filter",
            "problem": str(exc),
            "report_name": name,
            "tabs": REPORT_TABS,
            "choices": selectors.report_choices(),
            "form": {
                "values": values,
                "invalid": exc.name,
                "problem": str(exc),
                # What was sent is shown as typed: a date or number input would blank it.
                "since_input": ("text", values["since"]),
                "until_input": ("text", values["until"]),
                "sla": values["sla"],
                "threshold": values["threshold"],
            },
        },
        status=400,
    )


def _build_report(
    request: HttpRequest, name: str, choices: dict[str, list[str]]
) -> tuple[Any, reports.Filters]:
    """The named report under the request's filters: what the page and its CSV both show."""
    build = reports.REPORTS.get(name)
    if build is None:
        raise Http404("Unknown report.")
    filters = _report_filters(request, choices)
    return build(filters), filters


def _date_input(at: datetime, *, end: bool) -> tuple[str, str]:
    """(input type, value) that gives `at` back when the form is applied: a date when `at` is
    a midnight in the reports' time zone (an end date means through that day), otherwise the
    date and time."""
    shown = reports.local(at)
    if shown.time() == time():
        return "date", f"{shown - timedelta(days=1) if end else shown:%Y-%m-%d}"
    return "datetime-local", f"{shown:%Y-%m-%dT%H:%M:%S}"


@require_GET
@console_role(roles.can_read_reports)
@replica.reading_reports
def reports_page(request: HttpRequest) -> HttpResponse:
    name = request.GET.get("report") or "latency"
    choices = selectors.report_choices()
    try:
        report, filters = _build_report(request, name, choices)
    except BadFilter as exc:
        return _report_problem(request, name, exc)
    return render(
        request,
        "audit/reports.html",
        {
            "report": report,
            "charts": [charts.render(c) for c in [report.chart, *report.extra_charts]],
            "tabs": REPORT_TABS,
            "filters": filters,
            "report_name": report.name,
            "form": {
                "values": {
                    "action": filters.action or "",
                    "agent": filters.agent or "",
                    "analyst": filters.analyst or "",
                    "scope": filters.scope,
                },
                "invalid": "",
                "since_input": _date_input(filters.since, end=False),
                "until_input": _date_input(filters.until, end=True),
                "sla": filters.sla_minutes,
                "threshold": f"{filters.threshold:.2f}",
            },
            "period": reports.period_text(filters),
            "choices": choices,
            "query": _query_without(request, "report"),
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
@replica.reading_reports
def report_csv(request: HttpRequest, report: str) -> HttpResponse:
    try:
        result, filters = _build_report(request, report, selectors.report_choices())
    except BadFilter as exc:
        return _report_problem(request, report, exc)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{report}.csv"'
    writer = exports.CsvWriter(response)
    writer.writerow(
        [
            "report",
            result.title,
            "from",
            filters.since.isoformat(),
            "until",
            filters.until.isoformat(),
            "counted",
            result.counted,
            "period",
            reports.period_text(filters),
        ]
    )
    writer.writerow(["finding", result.finding])
    for row in result.csv_rows():
        writer.writerow(row)
    return response


@require_GET
@console_role(roles.can_read_reports)
def agent_readiness(request: HttpRequest, slug: str) -> HttpResponse:
    """One agent's readiness per action (DESIGN §11, Additions: `/agents/{slug}/`)."""
    agent = get_object_or_404(listed_agents(), slug=slug)
    with replica.custom_plans("default"):  # its record is the trust report's statement
        found = readiness(agent)
    return render(
        request,
        "audit/readiness.html",
        {
            "readiness": found,
            "agent": agent,
            "period": reports.period_text(found.filters),
        },
    )


@require_POST
@console_role(roles.can_read_reports)
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Verify the chain from the browser; the outcome is recorded and shown on the page."""
    result = verify_and_record()
    if result.ok:
        messages.success(request, f"Audit chain intact: {result.events} events.")
    else:
        messages.error(request, f"Audit chain {result.broken_summary()}")
    return redirect("audit")
