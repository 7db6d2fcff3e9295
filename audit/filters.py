"""Reading the time and id filters that the audit page, the reports and export_audit share."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


class BadFilter(ValueError):
    """A filter value that cannot be read: answered with its reason, never a crash."""


def moment(raw: str | None) -> datetime | None:
    """A date (midnight, in the console's time zone) or an ISO datetime; None when empty."""
    if not raw:
        return None
    try:
        parsed = parse_datetime(raw)
        if parsed is None:
            day = parse_date(raw)
            if day is None:
                raise BadFilter(f"{raw!r} is not a date (YYYY-MM-DD) or a date and time.")
            parsed = datetime(day.year, day.month, day.day)  # noqa: DTZ001 made aware below
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed)
        parsed.astimezone(UTC)  # far-off dates overflow here rather than in the query
    except BadFilter:
        raise
    except (ValueError, OverflowError) as exc:
        raise BadFilter(f"{raw!r} is not a valid date.") from exc
    return parsed


def proposal_id(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError as exc:
        raise BadFilter(f"{raw!r} is not a proposal id.") from exc
