"""Reading the filters that the audit page, the reports and export_audit share: times, ids,
names and event types. Each refuses what it cannot read (BadFilter, with why); an empty
value filters nothing."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta, tzinfo

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from soc_console.dates import out_of_range

DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BadFilter(ValueError):
    """A filter value that cannot be read: answered with its reason, never a crash."""

    def __init__(self, message: str, *, field: str = "", name: str = "") -> None:
        super().__init__(message)
        self.field = field  # the form's label for the value, when known
        self.name = name  # the query parameter it came from: the form marks that input


def moment(raw: str | None, zone: tzinfo | None = None, *, end: bool = False) -> datetime | None:
    """A date (midnight) or an ISO datetime, read in `zone` (the console's time zone by
    default) unless it carries its own offset; None when empty. With `end` (an "until"), a date
    alone means through that day: the next midnight, as the reports and the lists read it."""
    if not raw:
        return None
    try:
        # A date alone (parse_datetime would read it too, as its midnight).
        day = parse_date(raw) if DATE.fullmatch(raw) else None
        parsed = parse_datetime(raw) if day is None else None
        if day is not None:
            parsed = datetime(day.year, day.month, day.day)  # noqa: DTZ001 made aware below
        if parsed is None:
            raise BadFilter(f"{raw!r} is not a date (YYYY-MM-DD) or a date and time.")
        refused = out_of_range(parsed.date())
        if refused:
            raise BadFilter(refused)
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, zone)
        if end and day is not None:
            parsed = timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min), zone)
        parsed.astimezone(UTC)  # an offset far from UTC must not overflow in the query
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
