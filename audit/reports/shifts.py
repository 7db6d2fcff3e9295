"""Approval fatigue in pieces that join: what the fatigue report counts about one analyst's
decisions over a stretch of time (a local day, a month, the rows of a partial day), in a form
where two consecutive stretches merge into the figures of both.

A shift is a run of an analyst's decisions with no gap longer than `SHIFT_GAP`; it may cross
midnight, so a day cannot close its first and last shift. A `Summary` keeps those two open (a
`Segment`: its first and last moment, the counted figures so far, and the counted decisions of
its first and last hour, the only ones whose place in the shift a later join can change) and
folds every shift between them into totals by the local hour it started in. Two summaries
merge by joining the earlier's last shift and the later's first when the gap between them is
`SHIFT_GAP` or less, as the exact statement (`audit.sql.FATIGUE`) would. The approval streak
is the usual monoid of runs between rejections: the run before the first rejection, the run
after the last, and the longest in between.

Moments are whole microseconds since the epoch, so that the gap and the first and last hour
compare exactly. Durations on the card go into the rollups' histograms (medians within 2 %);
every count is exact. A clock hour holds decisions of at most one shift (the gap is longer
than an hour), so active hours add up over shifts, less one where two joined pieces meet in the
same hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings

from .base import OFFICE_HOURS, SHIFT_GAP
from .histogram import Histogram, add, ints, put

SECOND = 10**6  # moments and gaps in microseconds
HOUR = 3600 * SECOND
GAP = int(SHIFT_GAP.total_seconds()) * SECOND
LONG = 2 * HOUR  # a shift this long compares its first hour with its last
if GAP <= HOUR:  # active hours add up over shifts only if no clock hour holds two of them
    raise RuntimeError("SHIFT_GAP must be longer than an hour")

Filter = tuple[str, str]  # agent slug, action; "" for every one
EVERY: Filter = ("", "")


@dataclass
class Agg:
    """The counted decisions of some shifts (or of one still open)."""

    n: int = 0
    approvals: int = 0
    hours: int = 0  # clock hours with a counted decision
    shifts: int = 0  # closed shifts holding a counted decision
    card: Histogram = field(default_factory=dict)
    rubber: int = 0
    first: Histogram = field(default_factory=dict)  # on the card in a long shift's first hour
    last: Histogram = field(default_factory=dict)  # and in its last
    undone: int = 0
    after: int = 0

    def add(self, other: Agg) -> None:
        self.n += other.n
        self.approvals += other.approvals
        self.hours += other.hours
        self.shifts += other.shifts
        add(self.card, other.card)
        self.rubber += other.rubber
        add(self.first, other.first)
        add(self.last, other.last)
        self.undone += other.undone
        self.after += other.after

    def dump(self) -> list[Any]:
        return [
            self.n,
            self.approvals,
            self.hours,
            self.shifts,
            self.card,
            self.rubber,
            self.first,
            self.last,
            self.undone,
            self.after,
        ]

    @classmethod
    def load(cls, data: list[Any]) -> Agg:
        n, approvals, hours, shifts, card, rubber, first, last, undone, after = data
        return cls(
            n, approvals, hours, shifts, ints(card), rubber, ints(first), ints(last), undone, after
        )


@dataclass
class Segment:
    """A shift, or the part of one a stretch of time holds, not yet closed."""

    start: int  # its first decision and its last, of any kind
    end: int
    start_hour: int  # local hour of its first decision
    agg: Agg = field(default_factory=Agg)
    first_key: int | None = None  # the clock hours of its first and last counted decision
    last_key: int | None = None
    head: list[tuple[int, float]] = field(default_factory=list)  # counted, with a card,
    tail: list[tuple[int, float]] = field(default_factory=list)  # in its first / last hour

    def dump(self) -> list[Any]:
        return [
            self.start,
            self.end,
            self.start_hour,
            self.agg.dump(),
            self.first_key,
            self.last_key,
            self.head,
            self.tail,
        ]

    @classmethod
    def load(cls, data: list[Any]) -> Segment:
        start, end, hour, agg, first_key, last_key, head, tail = data
        return cls(
            start,
            end,
            hour,
            Agg.load(agg),
            first_key,
            last_key,
            [(t, c) for t, c in head],
            [(t, c) for t, c in tail],
        )

    def bare(self) -> Segment:
        return Segment(self.start, self.end, self.start_hour)


def _join(x: Segment, y: Segment) -> Segment:
    """One shift from two pieces less than a gap apart, x first."""
    agg = Agg()
    agg.add(x.agg)
    agg.add(y.agg)
    if x.last_key is not None and x.last_key == y.first_key:
        agg.hours -= 1
    return Segment(
        x.start,
        y.end,
        x.start_hour,
        agg,
        x.first_key if x.first_key is not None else y.first_key,
        y.last_key if y.last_key is not None else x.last_key,
        x.head + [e for e in y.head if e[0] < x.start + HOUR],
        [e for e in x.tail if e[0] > y.end - HOUR] + y.tail,
    )


def _close(segment: Segment) -> Agg:
    """A whole shift's figures: it counts as a shift if it holds a counted decision, and a
    long one compares its first hour with its last."""
    agg = replace(segment.agg, card=dict(segment.agg.card), first={}, last={})
    agg.shifts += 1 if agg.n else 0
    if segment.end - segment.start >= LONG:
        for _, card in segment.head:
            put(agg.first, card)
        for _, card in segment.tail:
            put(agg.last, card)
    return agg


Streak = tuple[int, int, int, bool]  # run before the first rejection, after the last, longest, any
NO_STREAK: Streak = (0, 0, 0, False)


def _streaks(a: Streak, b: Streak) -> Streak:
    a_head, a_tail, a_best, a_broken = a
    b_head, b_tail, b_best, b_broken = b
    if not a_broken and not b_broken:
        total = a_head + b_head
        return (total, total, total, False)
    if not a_broken:
        return (a_head + b_head, b_tail, max(b_best, a_head + b_head), True)
    if not b_broken:
        return (a_head, a_tail + b_head, max(a_best, a_tail + b_head), True)
    return (a_head, b_tail, max(a_best, b_best, a_tail + b_head), True)


@dataclass
class Summary:
    """One analyst's decisions over a stretch of time, for one filter."""

    closed: dict[int, Agg] = field(default_factory=dict)  # by the local hour shifts started in
    open: list[Segment] = field(default_factory=list)  # the first and the last shift
    streak: Streak = NO_STREAK

    def fold(self, segment: Segment) -> None:
        self.closed.setdefault(segment.start_hour, Agg()).add(_close(segment))

    def dump(self) -> dict[str, Any]:
        return {
            "closed": {hour: agg.dump() for hour, agg in self.closed.items()},
            "open": [segment.dump() for segment in self.open],
            "streak": list(self.streak),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Summary:
        head, tail, best, broken = data["streak"]
        return cls(
            {int(hour): Agg.load(agg) for hour, agg in data["closed"].items()},
            [Segment.load(segment) for segment in data["open"]],
            (head, tail, best, bool(broken)),
        )

    def skeleton(self) -> Summary:
        """The same shifts and rejections with nothing counted: what a filter with no
        decision in this stretch reads."""
        return Summary({}, [segment.bare() for segment in self.open], (0, 0, 0, self.streak[3]))

    def totals(self) -> dict[int, Agg]:
        """Every shift closed: the figures by the hour each started in."""
        done = Summary(_added(self.closed, {}))
        for segment in self.open:
            done.fold(segment)
        return done.closed

    @property
    def longest(self) -> int:
        return self.streak[2]


def merge(a: Summary, b: Summary) -> Summary:
    """The summary of a's stretch followed by b's."""
    if not a.open:
        return Summary(_added(a.closed, b.closed), list(b.open), _streaks(a.streak, b.streak))
    if not b.open:
        return Summary(_added(a.closed, b.closed), list(a.open), _streaks(a.streak, b.streak))
    x, y = a.open[-1], b.open[0]
    seam = [_join(x, y)] if y.start - x.end <= GAP else [x, y]
    chain = a.open[:-1] + seam + b.open[1:]
    out = Summary(_added(a.closed, b.closed), [], _streaks(a.streak, b.streak))
    for segment in chain[1:-1]:
        out.fold(segment)
    out.open = [chain[0], chain[-1]] if len(chain) > 1 else chain
    return out


def _added(a: dict[int, Agg], b: dict[int, Agg]) -> dict[int, Agg]:
    out: dict[int, Agg] = {}
    for part in (a, b):
        for hour, agg in part.items():
            out.setdefault(hour, Agg()).add(agg)
    return out


def merge_all(parts: Iterable[Summary]) -> Summary:
    out = Summary()
    for part in parts:
        out = merge(out, part)
    return out


# --- from the rows ------------------------------------------------------------------------------


@dataclass
class Row:
    """One decision as a summary reads it."""

    t: int
    approve: bool
    filters: tuple[Filter, ...]  # the filters that count it
    undone: bool
    card: float | None
    hour: int  # local hour, ISO weekday, and the local clock hour it fell in
    dow: int
    key: int


def summarize(rows: list[Row], filters: Iterable[Filter]) -> dict[Filter, Summary]:
    """The summaries of one analyst's decisions (in time order) for each filter, shifts and
    rejections taken from all of them."""
    wanted = list(filters)
    if not rows:
        return {}
    spans: list[Segment] = []
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i].t - rows[i - 1].t > GAP:
            spans.append(Segment(rows[start].t, rows[i - 1].t, rows[start].hour))
            start = i
    segments = {name: [span.bare() for span in spans] for name in wanted}
    runs = {name: _Run() for name in wanted}
    rejections = 0
    rubber = float(settings.RUBBER_STAMP_SECONDS)
    office_start, office_end = OFFICE_HOURS
    index = 0
    for row in rows:
        while row.t > spans[index].end:
            index += 1
        if not row.approve:
            rejections += 1
        for name in row.filters:
            if name not in segments:
                continue
            segment = segments[name][index]
            agg = segment.agg
            agg.n += 1
            if segment.last_key != row.key:
                agg.hours += 1
                segment.last_key = row.key
            if segment.first_key is None:
                segment.first_key = row.key
            if row.approve:
                agg.approvals += 1
                runs[name].approval(rejections)
                agg.undone += row.undone
            if row.card is not None:
                put(agg.card, row.card)
                agg.rubber += row.card < rubber
                if row.t < segment.start + HOUR:
                    segment.head.append((row.t, row.card))
                if row.t > segment.end - HOUR:
                    segment.tail.append((row.t, row.card))
            if row.dow >= 6 or row.hour < office_start or row.hour >= office_end:
                agg.after += 1
    out = {}
    for name in wanted:
        summary = Summary(streak=runs[name].streak(rejections))
        chain = segments[name]
        for segment in chain[1:-1]:
            summary.fold(segment)
        summary.open = [chain[0], chain[-1]] if len(chain) > 1 else chain
        out[name] = summary
    return out


class _Run:
    """Counted approvals between rejections, for one filter (rejections are everyone's)."""

    def __init__(self) -> None:
        self.run = 0  # rejections before the current run
        self.count = 0
        self.head = 0
        self.best = 0

    def approval(self, rejections: int) -> None:
        if rejections != self.run:
            self._end()
            self.run, self.count = rejections, 0
        self.count += 1

    def _end(self) -> None:
        if self.run == 0:
            self.head = self.count
        self.best = max(self.best, self.count)

    def streak(self, rejections: int) -> Streak:
        self._end()
        if not rejections:
            return (self.count, self.count, self.count, False)
        tail = self.count if self.run == rejections else 0
        return (self.head, tail, self.best, True)
