"""Reading the filters that the audit page, the reports and export_audit share: times, ids,
names and event types. Each refuses what it cannot read (BadFilter, with why); an empty
value filters nothing."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, tzinfo

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


class BadFilter(ValueError):
    """A filter value that cannot be read: answered with its reason, never a crash."""

    def __init__(self, message: str, *, field: str = "", name: str = "") -> None:
        super().__init__(message)
        self.field = field  # the form's label for the value, when known
        self.name = name  # the query parameter it came from: the form marks that input


def moment(raw: str | None, zone: tzinfo | None = None) -> datetime | None:
    """A date (midnight) or an ISO datetime, read in `zone` (the console's time zone by
    default) unless it carries its own offset; None when empty."""
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
            parsed = timezone.make_aware(parsed, zone)
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


def printable(raw: str | None, *, what: str) -> str | None:
    """A name as the log records it (an actor): any text but control characters, which no
    recorded name holds (and PostgreSQL refuses NUL in a query outright)."""
    if not raw:
        return None
    if any(unicodedata.category(char) == "Cc" for char in raw):
        raise BadFilter(f"{raw!r} holds a control character, which no {what} has.")
    return raw


def one_of(raw: str | None, known: Collection[str], *, what: str) -> str | None:
    """One of the known values (an event type), or a refusal that lists them."""
    if not raw:
        return None
    if raw not in known:
        raise BadFilter(
            f"there is no {what} {raw!r}; the known ones are {', '.join(sorted(known))}."
        )
    return raw


def number(raw: str | None) -> int | None:
    """A whole number written in ASCII digits (str.isdigit also takes '²', which int refuses)."""
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise BadFilter(f"{raw!r} is not a whole number.")
    return int(raw)
