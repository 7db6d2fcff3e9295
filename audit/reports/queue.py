"""Queue depth: how many proposals sent to analysts were pending at once, over the period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value

from ..sql import QUEUE_DEPTH, Seconds, fetch, rows_sql
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
