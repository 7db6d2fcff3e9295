"""A report's period from the daily rollups and the rows around them: the whole days that
have a rollup are read from it (whole months from their month row), and the rest of the
period (days not built, partial days, what came after today's rollup) is built from the rows
with the same code (`rollup.build`). With no built day in its span a report runs its exact
statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.db.models import Q

from ..models import ReportRollup, ReportRollupDay
from . import shift_rollup, shifts
from .base import Filters, report_zone
from .rollup import DAY, Chosen, Key, build, day_bounds, month_days
from .tally import Tally, then


@dataclass
class Period:
    """A report's figures for its period: per key the merged tally, and the queue's moves
    by hour from the period's start."""

    tallies: dict[Key, Tally]
    queue: dict[int, tuple[int, int, float]]  # the filter's own key
    key: Key


_exact: ContextVar[bool] = ContextVar("reports_exact", default=False)


@contextmanager
def exact() -> Iterator[None]:
    """Reports computed inside run their exact statements, whatever rollups there are (the
    benchmark compares the two)."""
    token = _exact.set(True)
    try:
        yield
    finally:
        _exact.reset(token)


def usable(f: Filters, *, threshold: bool = True) -> bool:
    """Whether the rollups can answer these filters: some whole day of the period is built,
    and (for a report that reads it) the what-if threshold is a whole centile."""
    if _exact.get() or threshold and round(f.threshold * 100) / 100 != f.threshold:
        return False
    return bool(_built_days(f))


def _whole_days(f: Filters) -> list[date]:
    zone = ZoneInfo(report_zone())
    first = f.since.astimezone(zone).date()
    if day_bounds(first)[0] < f.since:
        first += DAY
    days, day = [], first
    while day_bounds(day)[1] <= f.until:
        days.append(day)
        day += DAY
    return days


def _built_days(f: Filters) -> dict[date, datetime]:
    """The period's whole days with a rollup, and up to when each counts its proposals (the
    day's end, or a moment of today)."""
    days = _whole_days(f)
    if not days:
        return {}
    built = dict(
        ReportRollupDay.objects.filter(day__gte=days[0], day__lte=days[-1]).values_list(
            "day", "built_at"
        )
    )
    return {day: built[day] for day in days if day in built}


def period(f: Filters, *, part: str = "latency") -> Period:
    """The merged tallies of the filter's key and of the keys its breakdowns read: for
    "latency" the filter's own row and its rows by action and by agent; for "counts" (trust
    and what-if) its rows by agent and action together, their counts and confidence only."""
    key: Key = (f.agent or "", f.action or "", f.analyst or "")
    covered = _built_days(f)
    built = list(covered)
    months = _months(built)
    tallies: dict[Key, Tally] = defaultdict(Tally)
    # (when the part's moves begin, where its hour slots count from, its slots)
    queue: list[tuple[datetime, datetime, dict[int, tuple[int, int, float]]]] = []
    rows = ReportRollup.objects.filter(
        Q(period="month", day__in=sorted(months))
        | Q(period="day", day__in=[d for d in built if d.replace(day=1) not in months]),
        analyst=key[2],
    )
    if part == "latency":
        own = rows.filter(agent=key[0], action=key[1]).values_list(
            "day", "counts", "wait", "detail"
        )
        for day, counts, wait, detail in own:
            tally = Tally.from_columns(counts, wait, {}, detail)
            queue.append((day_bounds(day)[0], day_bounds(day)[0], tally.queue))
            tallies[key].merge(tally)
        # By action within the filter's agent, and by agent within its action.
        by_action = Q(agent=key[0]) & ~Q(action="") if not key[1] else Q(pk__in=[])
        by_agent = Q(action=key[1]) & ~Q(agent="") if not key[0] else Q(pk__in=[])
        for agent, action, counts, wait in rows.filter(by_action | by_agent).values_list(
            "agent", "action", "counts", "wait"
        ):
            tallies[(agent, action, key[2])].merge(Tally.from_columns(counts, wait, {}, None))
    else:
        pairs = rows.exclude(agent="").exclude(action="")
        if key[0]:
            pairs = pairs.filter(agent=key[0])
        if key[1]:
            pairs = pairs.filter(action=key[1])
        for agent, action, counts, confidence in pairs.values_list(
            "agent", "action", "counts", "confidence"
        ):
            tallies[(agent, action, key[2])].merge(Tally.from_columns(counts, {}, confidence, None))
    # The rest of the period from the rows: the days not built, today, partial days.
    chosen = Chosen(agent=key[0], action=key[1], analyst=key[2], every=False)
    for low, high in _gaps(f, covered):
        for k, tally in build(low, high, chosen, origin=f.since).items():
            tallies[k].merge(tally)
            if k == key:
                queue.append((low, f.since, tally.queue))
    return Period(dict(tallies), _shifted(f, queue), key)


def _months(built: list[date]) -> set[date]:
    """The months all of whose days are built (and so have a month row)."""
    have = set(built)
    firsts = {day.replace(day=1) for day in built}
    return {first for first in firsts if all(d in have for d in month_days(first))}


def shift_summaries(f: Filters) -> dict[str, shifts.Summary]:
    """Approval fatigue over the period, per analyst: the built days' summaries (a whole
    month's from its row) and the rest of the period's from the rows, merged in time order."""
    wanted = (f.agent or "", f.action or "")
    analyst = f.analyst or ""
    covered = _built_days(f)
    months = _months(list(covered))
    units = [("month", first) for first in sorted(months)]
    units += [("day", day) for day in covered if day.replace(day=1) not in months]
    pieces = [
        (day_bounds(day)[0], by_analyst)
        for (_, day), by_analyst in shift_rollup.stored(units, wanted, analyst).items()
    ]
    for low, high in _gaps(f, covered):
        built = shift_rollup.build(low, high, analyst=analyst, only=wanted)
        pieces.append((low, {name: by_filter[wanted] for name, by_filter in built.items()}))
    out: dict[str, shifts.Summary] = {}
    for _, by_analyst in sorted(pieces, key=lambda piece: piece[0]):
        for name, summary in by_analyst.items():
            out[name] = shifts.merge(out[name], summary) if name in out else summary
    return out


def _gaps(f: Filters, covered: dict[date, datetime]) -> list[tuple[datetime, datetime]]:
    """The parts of the period no rollup counts: days not built, partial days, and what was
    submitted after a rollup of today was built."""
    gaps, at = [], f.since
    for day, until in covered.items():
        low, high = day_bounds(day)
        if low > at:
            gaps.append((at, low))
        at = min(max(until, low), high)
        if at < high:
            gaps.append((at, high))
            at = high
    if at < f.until:
        gaps.append((at, f.until))
    return gaps


def _shifted(
    f: Filters, parts: list[tuple[datetime, datetime, dict[int, tuple[int, int, float]]]]
) -> dict[int, tuple[int, int, float]]:
    """The queue's hour slots from the period's start, from parts whose slots count hours
    from a whole number of hours after it (a day's start, or the period's own).

    Two parts can share an hour: today's rollup ends at the moment it was built, and the
    rows after it fill the rest of that hour. Their moves are joined in time order, so that
    neither the earlier part's net change nor its highest depth is lost."""
    out: dict[int, tuple[int, int, float]] = {}
    for _, start, slots in sorted(parts, key=lambda part: part[0]):
        offset = (start - f.since).total_seconds()
        hours = round(offset / 3600)
        for slot, (net, most, at) in slots.items():
            moved = (net, most, at + offset)
            earlier = out.get(slot + hours)
            out[slot + hours] = moved if earlier is None else then(earlier, moved)
    return out


def aligned(f: Filters) -> bool:
    """Whether the period starts on a local hour, so that rollups' hour slots fall inside the
    queue chart's intervals."""
    return f.since.astimezone(ZoneInfo(report_zone())).replace(
        minute=0, second=0, microsecond=0
    ) == f.since.astimezone(ZoneInfo(report_zone()))
