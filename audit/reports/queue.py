"""Queue depth: how many proposals sent to analysts were pending at once, over the period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from .base import SENT_STATUSES, Filters, local
from .query import longest_life, proposals


def bucket_width(f: Filters) -> timedelta:
    span = f.until - f.since
    if span <= timedelta(days=3):
        return timedelta(hours=1)
    if span <= timedelta(days=45):
        return timedelta(hours=6)
    return timedelta(days=1)


@dataclass
class QueueDepth:
    # (interval start, most proposals pending at once in it, pending at its end)
    series: list[tuple[str, int, int]]
    peak: int
    peak_at: datetime | None

    @property
    def peak_label(self) -> str:
        return f"{local(self.peak_at):%Y-%m-%d %H:%M}" if self.peak_at else ""


def _moves(f: Filters) -> list[tuple[datetime, int]]:
    """Every arrival in the queue (+1, at the start of the period for a proposal already
    pending) and every departure (-1: decision, expiry or withdrawal) in the period, in time
    order; at the same instant a departure counts before an arrival."""
    # A proposal pending at `since` was submitted at most one expiry period earlier.
    queued = (
        proposals(f, since=f.since - longest_life())
        .filter(status__in=SENT_STATUSES)
        .filter(Q(decided_at__isnull=True) | Q(decided_at__gt=f.since))
        .values_list("created_at", "decided_at")
    )
    moves = []
    for start, end in queued:
        moves.append((max(start, f.since), 1))
        if end is not None and end < f.until:
            moves.append((end, -1))
    moves.sort()
    return moves


def _buckets(f: Filters, width: timedelta) -> dict[datetime, tuple[int, int, datetime]]:
    """Per interval start: (net change, highest running depth in it, when first reached).

    The running sum of the moves is the depth at each moment, so its maximum is the true peak,
    not the highest of a few samples.
    """
    buckets: dict[datetime, tuple[int, int, datetime]] = {}
    depth = 0
    for at, delta in _moves(f):
        depth += delta
        bucket = f.since + width * ((at - f.since) // width)
        net, peak, when = buckets.get(bucket, (0, depth, at))
        buckets[bucket] = (net + delta, *((depth, at) if depth > peak else (peak, when)))
    return buckets


def queue_depth(f: Filters) -> QueueDepth:
    """The queue of proposals sent to analysts: its running peak, and per time interval the
    most proposals pending at once and the number pending at the interval's end."""
    width = bucket_width(f)
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
