"""Daily rollups: the reports' figures per local day, so that a report over a year reads a few
hundred rows instead of millions.

A day's rollup holds, per agent, action and analyst ("" for every one), what the latency,
trust and what-if reports count about the proposals submitted that day: counts by status and
outcome, per confidence centile the tallies the trust and what-if reports replay, latency
histograms (to the final decision, by hour of day, by analyst, two-person, to execution), and
the queue's arrivals and departures by hour. Whole months are merged into a month row.

Histograms have geometric buckets 2 % wide, plus a bound at every whole minute up to a day:
a percentile read from them is within 2 % of PostgreSQL's percentile_cont (each order
statistic is placed inside its own bucket, whose width is under 2 % of any value in it, and
percentile_cont interpolates between two of them), and the SLA's "decided within N minutes"
is exact, as N minutes is a bound.

A report uses the rollups of the whole days it spans that have been built (`ReportRollupDay`)
and, for the rest (today, partial days, days not built yet), builds the same figures from the
rows; with no built day in its span it runs its exact statements. Counts are the same either
way; percentiles are within 2 %.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from operator import add
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Min, Q, Value
from django.db.models.functions import ExtractHour
from django.utils import timezone

from approvals.models import Decision, ExecutionStatus, Proposal, ProposalStatus

from ..bulk import write_rows
from ..models import ReportRollup, ReportRollupDay
from ..sql import Seconds, rollup_lock
from .base import (
    BAD_OUTCOMES,
    DECIDED_STATUSES,
    FINISHED,
    SENT_STATUSES,
    UNDONE,
    Filters,
    report_zone,
)
from .query import elapsed, longest_life

# Bump when the buckets or the shape of a row change: rows of another version are not read.
VERSION = 1
RATIO = 1.02
FLOOR = 0.001  # seconds: values up to this share the first bucket
DAY = timedelta(days=1)
IN_FLIGHT = timedelta(seconds=5)


def _bounds() -> list[float]:
    bounds = {60.0 * minute for minute in range(1, 24 * 60 + 1)}
    value = FLOOR
    while value < 400 * 86400:
        bounds.add(value)
        value *= RATIO
    return sorted(bounds)


BOUNDS = _bounds()


def bucket(seconds: float) -> int:
    """Bucket i holds the values above BOUNDS[i-1] and up to BOUNDS[i]."""
    return bisect.bisect_left(BOUNDS, seconds)


def bucket_range(i: int) -> tuple[float, float]:
    low = 0.0 if i == 0 else BOUNDS[i - 1]
    high = BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1] * RATIO
    return low, high


Histogram = dict[int, int]


def percentiles(
    histogram: dict[Any, int], fractions: Iterable[float] = (0.5, 0.9, 0.99)
) -> list[float | None] | None:
    """percentile_cont at each fraction, each order statistic placed evenly inside its
    bucket; None for an empty histogram."""
    items = sorted((int(k), n) for k, n in histogram.items() if n)
    total = sum(n for _, n in items)
    if not total:
        return None

    def order_statistic(rank: int) -> float:
        seen = 0
        for i, n in items:
            if rank < seen + n:
                low, high = bucket_range(i)
                return low + (high - low) * (rank - seen + 0.5) / n
            seen += n
        return bucket_range(items[-1][0])[1]

    out: list[float | None] = []
    for q in fractions:
        position = q * (total - 1)
        low = int(position)
        value = order_statistic(low)
        if position > low:
            value += (order_statistic(low + 1) - value) * (position - low)
        out.append(value)
    return out


def count_above(histogram: dict[Any, int], seconds: float) -> int:
    """How many values are above `seconds`, exact when `seconds` is a bound (whole minutes
    up to a day are)."""
    edge = bucket(seconds)
    return sum(n for k, n in histogram.items() if int(k) > edge)


# --- the figures of a set of proposals, mergeable ---------------------------------------------

COUNTS = (
    "proposals",
    "sent",
    "decided",
    "approved",
    "rejected",
    "expired",
    "withdrawn",
    "pending",
    "auto",
    "escalated",
    "executed",
    "failed",
    "undone",
    "auto_executed",
    "auto_bad",
    "two_person",
)
# Per confidence centile: sent to analysts, rejected, approved but failed or rolled back,
# expired, auto-approved (each on critical targets and on the others), then decided and
# approved (all targets), then decided and "good" on non-critical targets (trust's scan).
C_SENT, C_REJECTED, C_UNDONE, C_EXPIRED, C_AUTO = 0, 1, 2, 3, 4
NON_CRITICAL = 5  # offset of the same five on non-critical targets
C_DECIDED, C_APPROVED, C_NC_DECIDED, C_NC_GOOD = 10, 11, 12, 13
CONFIDENCE_WIDTH = 14
CENTILES = [k / 100 for k in range(101)]


def centile(confidence: float) -> int:
    """k with CENTILES[k] <= confidence < CENTILES[k+1]: compared as the routing function and
    the exact reports compare (confidence >= threshold), never by multiplying."""
    return max(bisect.bisect_right(CENTILES, confidence) - 1, 0)


@dataclass
class Tally:
    """What the reports count about some proposals; `merge` adds another's."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    wait: Histogram = field(default_factory=dict)
    confidence: dict[int, list[int]] = field(default_factory=dict)
    withdrawn_wait: Histogram = field(default_factory=dict)
    hours: dict[int, Histogram] = field(default_factory=dict)
    analysts: dict[str, Histogram] = field(default_factory=dict)
    first: Histogram = field(default_factory=dict)
    final: Histogram = field(default_factory=dict)
    # proposal status -> [executions started, to start histogram, to finish histogram]
    ran: dict[str, list[Any]] = field(default_factory=dict)
    pending_at: list[float] = field(default_factory=list)  # submission times, epoch seconds
    # hour slot from the row's start -> (net change, highest running depth, when first)
    queue: dict[int, tuple[int, int, float]] = field(default_factory=dict)

    def merge(self, other: Tally, *, queue: bool = False) -> None:
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        _add(self.wait, other.wait)
        for k, values in other.confidence.items():
            mine = self.confidence.get(k)
            self.confidence[k] = values[:] if mine is None else list(map(add, mine, values))
        _add(self.withdrawn_wait, other.withdrawn_wait)
        for hour, histogram in other.hours.items():
            _add(self.hours.setdefault(hour, {}), histogram)
        for name, histogram in other.analysts.items():
            _add(self.analysts.setdefault(name, {}), histogram)
        _add(self.first, other.first)
        _add(self.final, other.final)
        for status, (n, start, finish) in other.ran.items():
            mine = self.ran.setdefault(status, [0, {}, {}])
            mine[0] += n
            _add(mine[1], start)
            _add(mine[2], finish)
        self.pending_at.extend(other.pending_at)
        if queue:
            self.queue.update(other.queue)

    def columns(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "wait": self.wait,
            "confidence": self.confidence,
            "detail": {
                "v": VERSION,
                "withdrawn_wait": self.withdrawn_wait,
                "hours": self.hours,
                "analysts": self.analysts,
                "first": self.first,
                "final": self.final,
                "ran": self.ran,
                "pending_at": self.pending_at,
                "queue": {k: list(v) for k, v in self.queue.items()},
            },
        }

    @classmethod
    def from_columns(cls, counts: dict, wait: dict, confidence: dict, detail: dict | None) -> Tally:
        tally = cls(
            counts=dict(counts),
            wait=_ints(wait),
            confidence={int(k): v for k, v in confidence.items()},
        )
        if detail:
            tally.withdrawn_wait = _ints(detail["withdrawn_wait"])
            tally.hours = {int(h): _ints(v) for h, v in detail["hours"].items()}
            tally.analysts = {name: _ints(v) for name, v in detail["analysts"].items()}
            tally.first = _ints(detail["first"])
            tally.final = _ints(detail["final"])
            tally.ran = {s: [n, _ints(a), _ints(b)] for s, (n, a, b) in detail["ran"].items()}
            tally.pending_at = list(detail["pending_at"])
            tally.queue = {int(k): tuple(v) for k, v in detail["queue"].items()}  # type: ignore[misc]
        return tally


def _ints(histogram: dict) -> Histogram:
    return {int(k): n for k, n in histogram.items()}


def _add(into: Histogram, other: Histogram) -> None:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n


def _put(histogram: Histogram, seconds: float) -> None:
    k = bucket(seconds)
    histogram[k] = histogram.get(k, 0) + 1


# --- building: from the rows of a time range ---------------------------------------------------

Key = tuple[str, str, str]  # agent slug, action, analyst username; "" for every one


@dataclass
class Chosen:
    """Which rows a build needs: every key (a day's rollup), or the ones a report reads."""

    agent: str = ""
    action: str = ""
    analyst: str = ""
    every: bool = True

    def keys(self, agent: str, action: str, analysts: Iterable[str]) -> Iterator[Key]:
        if self.every:
            for ag in (agent, ""):
                for ac in (action, ""):
                    yield ag, ac, ""
                    for an in analysts:
                        yield ag, ac, an
            return
        if self.agent and agent != self.agent or self.action and action != self.action:
            return
        if self.analyst and self.analyst not in analysts:
            return
        an = self.analyst
        # The filter's own row, and the breakdowns by action and by agent within it.
        yield self.agent, self.action, an
        if not self.action:
            yield self.agent, action, an
        if not self.agent:
            yield agent, self.action, an
        if not self.agent and not self.action:
            yield agent, action, an  # trust and what-if read agent and action together


def _since(field: str, moment: datetime) -> Seconds:
    """Seconds from `moment` to a datetime column, as a float, on either database."""
    return Seconds(
        ExpressionWrapper(
            F(field) - Value(moment, output_field=DateTimeField()), output_field=DurationField()
        )
    )


def build(start: datetime, end: datetime, chosen: Chosen | None = None) -> dict[Key, Tally]:
    """The tallies of the proposals submitted in [start, end), and the queue's moves in it
    by hour from `start`, per key.

    Durations come from the database as seconds (the exact statements' own expression, so
    that a latency of exactly N minutes is N minutes here too), and moments as seconds from
    `start`: reading millions of timestamps as datetimes cost more than the rest."""
    chosen = chosen or Chosen()
    zone = ZoneInfo(report_zone())
    submitted = Proposal.objects.filter(created_at__gte=start, created_at__lt=end).order_by()
    if chosen.agent:
        submitted = submitted.filter(agent__slug=chosen.agent)
    if chosen.action:
        submitted = submitted.filter(action=chosen.action)
    if chosen.analyst:
        submitted = submitted.filter(decisions__analyst__username=chosen.analyst)
    decisions: dict[Any, list[tuple[str, float]]] = defaultdict(list)
    for proposal_id, analyst, waited in (
        Decision.objects.filter(proposal__in=submitted.values("pk"))
        .order_by()
        .values_list(
            "proposal_id", "analyst__username", elapsed("created_at", "proposal__created_at")
        )
    ):
        decisions[proposal_id].append((analyst, waited))
    tallies: dict[Key, Tally] = defaultdict(Tally)
    moves: dict[Key, list[tuple[float, int]]] = defaultdict(list)
    rows = submitted.values_list(
        "id",
        "agent__slug",
        "action",
        "status",
        "confidence",
        "criticality",
        _since("created_at", start),
        elapsed("decided_at", "created_at"),
        "escalated_at",
        "required_approvals",
        "execution__status",
        elapsed("execution__started_at", "decided_at"),
        elapsed("execution__finished_at", "decided_at"),
        ExtractHour("created_at", tzinfo=zone),
    )
    start_epoch = start.timestamp()
    for row in rows:
        pid, agent, action, status, confidence, criticality, created = row[:7]
        waited, escalated_at, required, run, to_start, to_finish, hour = row[7:]
        given = decisions.get(pid, ())
        analysts = sorted({name for name, _ in given})
        contribution = _contribution(
            status,
            confidence,
            criticality,
            created + start_epoch,
            waited,
            escalated_at is not None,
            required,
            run,
            to_start,
            to_finish,
            given,
            hour,
        )
        # A day's build tallies each agent and action apart and adds them up below.
        for key in (
            _finest(agent, action, analysts)
            if chosen.every
            else chosen.keys(agent, action, analysts)
        ):
            _apply(tallies[key], contribution, only=key[2])
        if status in SENT_STATUSES:
            for key in chosen.keys(agent, action, analysts):
                moves[key].append((created, 1))
    # Departures in the range, whenever their proposal was submitted.
    departed = Proposal.objects.filter(
        status__in=SENT_STATUSES,
        decided_at__gte=start,
        decided_at__lt=end,
        created_at__gte=start - longest_life(),
        created_at__lt=end,
    ).order_by()
    if chosen.agent:
        departed = departed.filter(agent__slug=chosen.agent)
    if chosen.action:
        departed = departed.filter(action=chosen.action)
    if chosen.analyst:
        departed = departed.filter(decisions__analyst__username=chosen.analyst)
    analysts_of: dict[Any, list[str]] = defaultdict(list)
    for proposal_id, analyst in Decision.objects.filter(
        proposal__in=departed.values("pk")
    ).values_list("proposal_id", "analyst__username"):
        analysts_of[proposal_id].append(analyst)
    for pid, agent, action, at in departed.values_list(
        "id", "agent__slug", "action", _since("decided_at", start)
    ):
        for key in chosen.keys(agent, action, sorted(set(analysts_of.get(pid, [])))):
            moves[key].append((at, -1))
    if chosen.every:
        for (agent, action, analyst), tally in list(tallies.items()):
            for key in ((agent, "", analyst), ("", action, analyst), ("", "", analyst)):
                tallies[key].merge(tally)
    for key, events in moves.items():
        tallies[key].queue = _slots(events)
    return dict(tallies)


def _finest(agent: str, action: str, analysts: list[str]) -> Iterator[Key]:
    yield agent, action, ""
    for analyst in analysts:
        yield agent, action, analyst


@dataclass
class _Contribution:
    counts: list[str]
    centile: int
    confidence: list[tuple[int, int]]  # (index, 1) per tally of the centile it counts in
    wait: float | None
    withdrawn_wait: float | None
    hour: int
    decisions: Iterable[tuple[str, float]]
    two_person: tuple[float, float] | None
    ran: tuple[str, float, float | None] | None
    pending_at: float | None


def _contribution(
    status: str,
    confidence: float,
    criticality: str,
    created: float,
    waited: float | None,
    escalated: bool,
    required: int,
    run: str | None,
    to_start: float | None,
    to_finish: float | None,
    given: Iterable[tuple[str, float]],
    hour: int,
) -> _Contribution:
    status_ = ProposalStatus
    counts = ["proposals"]
    decided = status in DECIDED_STATUSES
    auto = status == status_.AUTO_APPROVED
    bad = run in BAD_OUTCOMES
    if status in SENT_STATUSES:
        counts.append("sent")
    if decided:
        counts.append("decided")
    name = COUNTED_STATUS.get(status)
    if name:
        counts.append(name)
    if escalated:
        counts.append("escalated")
    if run in FINISHED:
        counts.append("executed")
        if auto:
            counts.append("auto_executed")
    if run == ExecutionStatus.FAILED:
        counts.append("failed")
    if run in UNDONE:
        counts.append("undone")
    if auto and bad:
        counts.append("auto_bad")
    offset = 0 if criticality == "critical" else NON_CRITICAL
    tallied: list[tuple[int, int]] = []
    if status in SENT_STATUSES:
        tallied.append((offset + C_SENT, 1))
    if status == status_.REJECTED:
        tallied.append((offset + C_REJECTED, 1))
    if status == status_.APPROVED and bad:
        tallied.append((offset + C_UNDONE, 1))
    if status == status_.EXPIRED:
        tallied.append((offset + C_EXPIRED, 1))
    if auto:
        tallied.append((offset + C_AUTO, 1))
    if decided:
        tallied.append((C_DECIDED, 1))
        if status == status_.APPROVED:
            tallied.append((C_APPROVED, 1))
        if offset:
            tallied.append((C_NC_DECIDED, 1))
            if status == status_.APPROVED and not bad:
                tallied.append((C_NC_GOOD, 1))
    two = None
    if required >= 2 and status == status_.APPROVED and given and waited is not None:
        two = (min(seconds for _, seconds in given), waited)
    ran = None
    if to_start is not None and status in (status_.APPROVED, status_.AUTO_APPROVED):
        ran = (status, to_start, to_finish)
    return _Contribution(
        counts=counts,
        centile=centile(confidence),
        confidence=tallied,
        wait=waited if decided else None,
        withdrawn_wait=waited if status == status_.WITHDRAWN else None,
        hour=int(hour),
        decisions=given,
        two_person=two,
        ran=ran,
        pending_at=created if status == status_.PENDING else None,
    )


COUNTED_STATUS = {
    ProposalStatus.APPROVED: "approved",
    ProposalStatus.REJECTED: "rejected",
    ProposalStatus.EXPIRED: "expired",
    ProposalStatus.WITHDRAWN: "withdrawn",
    ProposalStatus.PENDING: "pending",
    ProposalStatus.AUTO_APPROVED: "auto",
}


def _apply(tally: Tally, c: _Contribution, *, only: str) -> None:
    counts = tally.counts
    for name in c.counts:
        counts[name] += 1
    if c.confidence:
        row = tally.confidence.get(c.centile)
        if row is None:
            row = tally.confidence[c.centile] = [0] * CONFIDENCE_WIDTH
        for index, n in c.confidence:
            row[index] += n
    if c.wait is not None:
        _put(tally.wait, c.wait)
        _put(tally.hours.setdefault(c.hour, {}), c.wait)
    if c.withdrawn_wait is not None:
        _put(tally.withdrawn_wait, c.withdrawn_wait)
    for name, seconds in c.decisions:
        if not only or name == only:
            _put(tally.analysts.setdefault(name, {}), seconds)
    if c.two_person is not None:
        counts["two_person"] += 1
        _put(tally.first, c.two_person[0])
        _put(tally.final, c.two_person[1])
    if c.ran is not None:
        status, to_start, to_finish = c.ran
        entry = tally.ran.setdefault(status, [0, {}, {}])
        entry[0] += 1
        _put(entry[1], to_start)
        if to_finish is not None:
            _put(entry[2], to_finish)
    if c.pending_at is not None:
        tally.pending_at.append(c.pending_at)


def _slots(events: list[tuple[float, int]]) -> dict[int, tuple[int, int, float]]:
    """Per hour slot: net change, highest running depth from the slot's start and when it
    was first reached; moves at the same moment take departures first (as QUEUE_DEPTH)."""
    out: dict[int, tuple[int, int, float]] = {}
    events.sort()
    slot, depth, most, at = None, 0, 0, 0.0
    for t, delta in events:
        s = int(t // 3600)
        if s != slot:
            if slot is not None:
                out[slot] = (depth, most, at)
            slot, depth, most, at = s, 0, -(10**9), 0.0
        depth += delta
        if depth > most:
            most, at = depth, t
    if slot is not None:
        out[slot] = (depth, most, at)
    return out


# --- storing -----------------------------------------------------------------------------------


def day_bounds(day: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(report_zone())
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + DAY, time(), zone).astimezone(UTC)
    return start, end


def local_day(at: datetime) -> date:
    return at.astimezone(ZoneInfo(report_zone())).date()


def rollup_day(day: date, *, month: bool = True) -> int:
    """Rebuild one local day's rollups and (unless told not to, when a caller rebuilding
    many days merges each month once) its month's; returns the proposals counted."""
    start, end = day_bounds(day)
    with transaction.atomic():
        rollup_lock(day.year, day.month)
        # A day in progress is counted up to a few seconds ago: a proposal stamped just
        # before may not have committed yet, and the reports take the rest from the rows.
        until = min(end, timezone.now() - IN_FLIGHT)
        if until <= start:
            return 0
        tallies = build(start, until)
        ReportRollup.objects.filter(period="day", day=day).delete()
        _write("day", day, tallies)
        proposals = tallies[("", "", "")].counts["proposals"] if ("", "", "") in tallies else 0
        ReportRollupDay.objects.update_or_create(
            day=day, defaults={"built_at": until, "proposals": proposals}
        )
        if month:
            rollup_month(day.replace(day=1))
    return proposals


ROLLUP_COLUMNS = ("period", "day", "agent", "action", "analyst", *Tally().columns())


def _write(period: str, day: date, tallies: dict[Key, Tally]) -> None:
    """The rows with COPY (a day's hold a few megabytes of JSON at ten million decisions a
    year, which the ORM's bulk insert escapes character by character)."""
    write_rows(
        ReportRollup._meta.db_table,
        ROLLUP_COLUMNS,
        [
            (period, day, *key, *(json.dumps(value) for value in tally.columns().values()))
            for key, tally in tallies.items()
        ],
    )


def _month_days(first: date) -> list[date]:
    days, day = [], first
    while day.month == first.month:
        days.append(day)
        day += DAY
    return days


def rollup_month(first: date) -> None:
    """The month's row per key, merged from its day rows, when every day of it is built."""
    days = _month_days(first)
    rollup_lock(first.year, first.month)
    ReportRollup.objects.filter(period="month", day=first).delete()
    if ReportRollupDay.objects.filter(day__in=days).count() < len(days):
        return
    month_start = day_bounds(first)[0]
    merged: dict[Key, Tally] = defaultdict(Tally)
    for row in ReportRollup.objects.filter(period="day", day__in=days).order_by("day"):
        tally = Tally.from_columns(row.counts, row.wait, row.confidence, row.detail)
        shift = round((day_bounds(row.day)[0] - month_start).total_seconds() / 3600)
        tally.queue = {
            slot + shift: (net, most, at + shift * 3600)
            for slot, (net, most, at) in tally.queue.items()
        }
        merged[(row.agent, row.action, row.analyst)].merge(tally, queue=True)
    _write("month", first, merged)


def rollup_all(since: date | None = None, until: date | None = None) -> Iterator[tuple[date, int]]:
    """Rebuild every day from the first proposal (or `since`) to today (or `until`)."""
    if since is None:
        first = Proposal.objects.aggregate(first=Min("created_at"))["first"]
        if first is None:
            return
        since = local_day(first)
    until = until or local_day(timezone.now())
    day = since
    while day <= until:
        yield day, rollup_day(day, month=False)
        if day == until or (day + DAY).month != day.month:
            with transaction.atomic():
                rollup_month(day.replace(day=1))
        day += DAY


# --- reading: a report's period from rollups and rows ------------------------------------------


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


def usable(f: Filters) -> bool:
    """Whether the rollups can answer these filters: some whole day of the period is built,
    and the what-if threshold is a whole centile."""
    if _exact.get() or round(f.threshold * 100) / 100 != f.threshold:
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
    built_set = set(built)
    months = {
        day.replace(day=1)
        for day in built
        if all(d in built_set for d in _month_days(day.replace(day=1)))
    }
    tallies: dict[Key, Tally] = defaultdict(Tally)
    queue: list[tuple[datetime, dict[int, tuple[int, int, float]]]] = []
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
            queue.append((day_bounds(day)[0], tally.queue))
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
        for k, tally in build(low, high, chosen).items():
            tallies[k].merge(tally)
            if k == key:
                queue.append((low, tally.queue))
    return Period(dict(tallies), _shifted(f, queue), key)


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
    f: Filters, parts: list[tuple[datetime, dict[int, tuple[int, int, float]]]]
) -> dict[int, tuple[int, int, float]]:
    """The queue's hour slots from the period's start, from parts that start a whole number
    of hours after it (`None` when one does not: the caller computes the queue exactly)."""
    out: dict[int, tuple[int, int, float]] = {}
    for start, slots in parts:
        offset = (start - f.since).total_seconds()
        hours = round(offset / 3600)
        for slot, (net, most, at) in slots.items():
            out[slot + hours] = (net, most, at + offset)
    return out


def aligned(f: Filters) -> bool:
    """Whether the period starts on a local hour, so that rollups' hour slots fall inside the
    queue chart's intervals."""
    return f.since.astimezone(ZoneInfo(report_zone())).replace(
        minute=0, second=0, microsecond=0
    ) == f.since.astimezone(ZoneInfo(report_zone()))
