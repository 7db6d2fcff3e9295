"""The days a filter may name, for every page that filters by date (the queue's lists, the
audit log, the reports): a date outside them is refused with one message, before a period
built from it overflows (`9999-12-31` plus a day, `0001-01-01` less a proposal's life) or a
report walks thousands of years (`since=0002-01-01` took 12 s; 1900 to 2999 takes about 2)."""

from __future__ import annotations

from datetime import date

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)


def out_of_range(day: date) -> str | None:
    """Why a filter cannot name this day, or None when it can."""
    if FIRST_DAY <= day <= LAST_DAY:
        return None
    return f"{day.isoformat()} is outside the dates a filter takes, {FIRST_DAY} to {LAST_DAY}."
