from __future__ import annotations

import json
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_GET

from approvals.views import console_role
from soc_console import roles

from . import exports, selectors


def _when(raw: str | None) -> datetime | None:
    if not raw:
        return None
    parsed = parse_datetime(raw)
    if parsed is None:
        day = parse_date(raw)
        if day is None:
            return None
        parsed = datetime(day.year, day.month, day.day)  # noqa: DTZ001 made aware below
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def _filters(request: HttpRequest) -> dict:
    return {
        "actor": request.GET.get("actor") or None,
        "event_type": request.GET.get("event_type") or None,
        "proposal_id": request.GET.get("proposal") or None,
        "since": _when(request.GET.get("since")),
        "until": _when(request.GET.get("until")),
    }


@require_GET
@console_role(roles.can_read_reports)
def audit_page(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    try:
        events = selectors.audit_events(**filters).order_by("-seq")
        page = Paginator(events, 100).get_page(request.GET.get("page"))
    except Exception as exc:  # a malformed proposal id in the filter
        raise Http404("Bad filter.") from exc
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit/audit.html",
        {
            "page": page,
            "head": selectors.chain_head(),
            "verification": selectors.last_verification(),
            "event_types": selectors.event_types(),
            "query": query.urlencode(),
            "filters": request.GET,
        },
    )


@require_GET
@console_role(roles.can_read_reports)
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    events = selectors.audit_events(**_filters(request)).order_by("seq")
    response = StreamingHttpResponse(
        (json.dumps(line) + "\n" for line in exports.jsonl_rows(events)),
        content_type="application/x-ndjson",
    )
    response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
    return response


@require_GET
@console_role(roles.can_read_reports)
def reports_page(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("Reports are not available yet.")


@require_GET
@console_role(roles.can_read_reports)
def report_csv(request: HttpRequest, report: str) -> HttpResponse:
    raise Http404("Unknown report.")
