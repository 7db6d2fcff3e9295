"""Queue depth: how many proposals sent to analysts were pending at once, over the period."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value

from ..sql import QUEUE_DEPTH, Seconds, fetch, rows_sql
from .base import SENT_STATUSES, Filters, local
from .query import counted, longest_life, proposals

# The most intervals the queue's chart shows: a longer period takes intervals of several days.
MAX_INTERVALS = 400


def bucket_width(f: Filters) -> timedelta:
    """The chart's interval: an hour over three days, six hours over 45, a day up to
    MAX_INTERVALS days, and beyond that as many whole days as keep the chart within
    MAX_INTERVALS (a report from 1900 drew 46,000 daily points and took seconds)."""
    span = f.until - f.since
    if span <= timedelta(days=3):
        return timedelta(hours=1)
    if span <= timedelta(days=45):
        return timedelta(hours=6)
    return timedelta(days=max(1, math.ceil(span / timedelta(days=MAX_INTERVALS))))


@dataclass
class QueueDepth:
    # (interval start, most proposals pending at once in it, pending at its end)
    series: list[tuple[str, int, int]]
    peak: int
    peak_at: datetime | None

    @property
    def peak_label(self) -> str:
        return f"{local(self.peak_at):%Y-%m-%d %H:%M}" if self.peak_at else ""


def _buckets(f: Filters, width: timedelta) -> dict[datetime, tuple[int, int, datetime]]:
    """Per interval start: (net change, highest running depth in it, when first reached), from
    every arrival and departure of proposals sent to analysts (`audit.sql.QUEUE_DEPTH`)."""
    start = Value(f.since, output_field=DateTimeField())
    # A proposal pending at `since` was submitted at most one expiry period earlier.
    queued = (
        proposals(f, since=f.since - longest_life())
        .filter(status__in=SENT_STATUSES)
        .filter(Q(decided_at__isnull=True) | Q(decided_at__gt=f.since))
        .annotate(
            s=Seconds(ExpressionWrapper(F("created_at") - start, output_field=DurationField())),
            e=Seconds(ExpressionWrapper(F("decided_at") - start, output_field=DurationField())),
        )
        .values("s", "e")
    )
    sql, params = rows_sql(queued)
    span, step = (f.until - f.since).total_seconds(), width.total_seconds()
    return {
        f.since + width * int(bucket): (int(net), int(most), f.since + timedelta(seconds=at))
        for bucket, net, most, at in fetch(QUEUE_DEPTH.format(rows=sql), [*params, span, step])
    }


def _at_start(f: Filters) -> tuple[int, int]:
    """Proposals sent to analysts before the period: how many were still pending at its
    start, and how many left the queue at that very moment."""
    found = (
        proposals(f, since=f.since - longest_life())
        .filter(created_at__lt=f.since, status__in=SENT_STATUSES)
        .aggregate(
            waiting=counted(Q(decided_at__isnull=True) | Q(decided_at__gt=f.since)),
            leaving=counted(Q(decided_at=f.since)),
        )
    )
    return found["waiting"], found["leaving"]


def _rolled_buckets(
    f: Filters, width: timedelta, slots: dict[int, tuple[int, int, float]], waiting: int
) -> dict[datetime, tuple[int, int, datetime]]:
    """`_buckets` from hour slots (net change, highest depth from the slot's start, when):
    the depth carried into each slot raises its highest depth, and those waiting at the
    period's start arrive at its first moment, as QUEUE_DEPTH counts them."""
    hours = round(width.total_seconds() / 3600)
    moves = sorted(slots.items())
    if waiting:
        moves.insert(0, (-1, (waiting, waiting, 0.0)))
    span = (f.until - f.since).total_seconds()
    out: dict[datetime, tuple[int, int, datetime]] = {}
    depth = 0
    for slot, (net, most, at) in moves:
        if at >= span:
            continue
        start = f.since + width * (max(slot, 0) // hours)
        previous = out.get(start)
        highest = depth + most
        if previous is None:
            out[start] = (net, highest, f.since + timedelta(seconds=at))
        else:
            before, best, when = previous
            if highest > best:
                best, when = highest, f.since + timedelta(seconds=at)
            out[start] = (before + net, best, when)
        depth += net
    return out


def queue_depth(
    f: Filters, *, slots: dict[int, tuple[int, int, float]] | None = None
) -> QueueDepth:
    """The queue of proposals sent to analysts: its running peak, and per time interval the
    most proposals pending at once and the number pending at the interval's end. With
    `slots`, from the rollups' hour slots (`audit.reports.rollup`) instead of every move."""
    width = bucket_width(f)
    buckets = None
    if slots is not None:
        waiting, leaving = _at_start(f)
        # A proposal that left the queue at the period's very first moment was never waiting
        # in it, but the rollups' first hour holds its departure among the hour's other moves,
        # inseparably: then (rarely: timestamps are to the microsecond) every move is read.
        if not leaving:
            buckets = _rolled_buckets(f, width, slots, waiting)
    if buckets is None:
        buckets = _buckets(f, width)
    depth = 0
    series = []
    peak, peak_at = 0, None
    start = f.since
    fmt = "%m-%d %H:%M" if width < timedelta(days=1) else "%Y-%m-%d"
    while start < f.until:
        net, most, at = buckets.get(start, (0, depth, None))
        if at is not None and most > peak:
            peak, peak_at = most, at
        # The depth carried in from the interval before counts toward this one's most.
        series.append((local(start).strftime(fmt), max(depth, most), depth + net))
        depth += net
        start += width
    return QueueDepth(series, peak, peak_at)
