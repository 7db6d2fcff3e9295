"""Approval fatigue's daily rollups: the summaries (`shifts`) of each analyst's decisions
given in a local day, per filter, built from the rows and stored; a month's merged from its
days; a report's filter read back for the days it spans.

Rollup rows (`ShiftRollup`) hold a summary per local day (and month), analyst and filter:
(agent, action), "" for every one. Shifts and rejections come from all of the analyst's
decisions whatever the filter, so a day without a filter's row reads the analyst's ("", "")
row with nothing counted (`skeleton`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import (
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    Value,
)
from django.db.models.functions import ExtractHour, ExtractIsoWeekDay, TruncHour

from approvals.models import Verdict

from ..bulk import write_rows
from ..models import ShiftRollup
from ..sql import Seconds
from .base import report_zone
from .query import decisions_given
from .shifts import EVERY, SECOND, Filter, Row, Summary, merge_all, summarize


def rows(
    low: datetime, high: datetime, *, analyst: str = "", only: Filter | None = None
) -> Iterator[tuple[str, list[Row]]]:
    """Each analyst's decisions given in [low, high), in time order, with the filters that
    count each: every one (a day's rollup) or `only` (a report's filter)."""
    zone = ZoneInfo(report_zone())
    base = Value(low, output_field=DateTimeField())
    origin = int(round(low.timestamp() * SECOND))

    def since(expression: Any) -> Seconds:
        return Seconds(ExpressionWrapper(expression - base, output_field=DurationField()))

    listed = (
        decisions_given(low, high, analyst=analyst)
        .order_by("analyst_id", "created_at")
        .values_list(
            "analyst__username",
            since(F("created_at")),
            "verdict",
            "proposal__agent__slug",
            "proposal__action",
            "undone",
            "seconds_on_card",
            ExtractHour("created_at", tzinfo=zone),
            ExtractIsoWeekDay("created_at", tzinfo=zone),
            since(TruncHour("created_at", tzinfo=zone)),
        )
    )
    current, found = None, []
    for name, t, verdict, agent, action, undone, card, hour, dow, key in listed.iterator(5000):
        if name != current:
            if found:
                yield current, found  # type: ignore[misc]
            current, found = name, []
        if only is None:
            counting: tuple[Filter, ...] = ((agent, action), (agent, ""), ("", action), EVERY)
        elif only[0] in ("", agent) and only[1] in ("", action):
            counting = (only,)
        else:
            counting = ()
        found.append(
            Row(
                origin + int(round(t * SECOND)),
                verdict == Verdict.APPROVE,
                counting,
                bool(undone),
                card,
                int(hour),
                int(dow),
                origin + int(round(key * SECOND)),
            )
        )
    if found:
        yield current, found  # type: ignore[misc]


def build(
    low: datetime, high: datetime, *, analyst: str = "", only: Filter | None = None
) -> dict[str, dict[Filter, Summary]]:
    """Per analyst, the summaries of [low, high): for every filter that counts one of their
    decisions (and always ("", "")), or for `only`."""
    out = {}
    for name, found in rows(low, high, analyst=analyst, only=only):
        filters = {f for row in found for f in row.filters} | {EVERY} if only is None else {only}
        out[name] = summarize(found, filters)
    return out


# --- stored per day and month -------------------------------------------------------------------

COLUMNS = ("period", "day", "agent", "action", "analyst", "summary")


def write(period: str, day: date, summaries: dict[str, dict[Filter, Summary]]) -> None:
    """The rows of one day or month, after the caller deleted the old ones."""
    write_rows(
        ShiftRollup._meta.db_table,
        COLUMNS,
        [
            (period, day, agent, action, analyst, json.dumps(summary.dump()))
            for analyst, by_filter in summaries.items()
            for (agent, action), summary in by_filter.items()
        ],
    )


def stored(
    units: list[tuple[str, date]], wanted: Filter, analyst: str = ""
) -> dict[tuple[str, date], dict[str, Summary]]:
    """The summaries of the given rows (period, day) for one filter, per analyst, each day
    without the filter's own row read from the analyst's ("", "") row as a skeleton."""
    if not units:
        return {}
    chosen = Q()
    for period, day in units:
        chosen |= Q(period=period, day=day)
    rows = ShiftRollup.objects.filter(chosen).filter(
        Q(agent=wanted[0], action=wanted[1]) | Q(agent="", action="")
    )
    if analyst:
        rows = rows.filter(analyst=analyst)
    own: dict[tuple[str, date], dict[str, Summary]] = defaultdict(dict)
    every: dict[tuple[str, date], dict[str, Summary]] = defaultdict(dict)
    for period, day, agent, action, name, summary in rows.values_list(
        "period", "day", "agent", "action", "analyst", "summary"
    ):
        into = own if (agent, action) == wanted else every
        into[(period, day)][name] = Summary.load(summary)
    out: dict[tuple[str, date], dict[str, Summary]] = {}
    for unit in units:
        found = dict(own.get(unit, {}))
        for name, summary in every.get(unit, {}).items():
            found.setdefault(name, summary.skeleton())
        out[unit] = found
    return out


def merge_stored(days: list[date]) -> dict[str, dict[Filter, Summary]]:
    """A month's summaries, merged from its days' rows, per analyst and filter."""
    found: dict[date, dict[str, dict[Filter, Summary]]] = defaultdict(lambda: defaultdict(dict))
    for day, agent, action, name, summary in ShiftRollup.objects.filter(
        period="day", day__in=days
    ).values_list("day", "agent", "action", "analyst", "summary"):
        found[day][name][(agent, action)] = Summary.load(summary)
    filters: dict[str, set[Filter]] = defaultdict(set)
    for by_analyst in found.values():
        for name, by_filter in by_analyst.items():
            filters[name] |= set(by_filter)
    out: dict[str, dict[Filter, Summary]] = defaultdict(dict)
    for name, wanted in filters.items():
        for f in wanted:
            parts = []
            for day in days:
                mine = found.get(day, {}).get(name, {})
                if f in mine:
                    parts.append(mine[f])
                elif EVERY in mine:
                    parts.append(mine[EVERY].skeleton())
            out[name][f] = merge_all(parts)
    return out
