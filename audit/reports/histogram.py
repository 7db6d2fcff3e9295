"""Latency histograms that add up: geometric buckets 2 % wide, plus a bound at every whole
minute up to a day.

A percentile read from them is within 2 % of PostgreSQL's percentile_cont (each order
statistic is placed inside its own bucket, whose width is under 2 % of any value in it, and
percentile_cont interpolates between two of them), and "decided within N minutes" is exact,
as N minutes is a bound. The daily rollups (`rollup`) and the shifts' summaries (`shifts`)
keep their durations in them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

RATIO = 1.02
FLOOR = 0.001  # seconds: values up to this share the first bucket


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


def ints(histogram: dict) -> Histogram:
    """A histogram read back from JSON, whose keys are text."""
    return {int(k): n for k, n in histogram.items()}


def add(into: Histogram, other: Histogram) -> None:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n


def put(histogram: Histogram, seconds: float) -> None:
    k = bucket(seconds)
    histogram[k] = histogram.get(k, 0) + 1
