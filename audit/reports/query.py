"""The rows every report reads, and exact percentiles, through the ORM on any database.

The reports run on PostgreSQL in production and on SQLite under `make run`, through these
same queries: counts are ORM aggregates (`Count(filter=…)` is FILTER on PostgreSQL and CASE on
SQLite), local hours come from tz-aware Extract, and percentiles from window functions, which
both databases have. The database still returns only a few rows per group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    Count,
    DurationField,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    FilteredRelation,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber

from agents.models import Policy
from approvals.models import Decision, Proposal

from .base import Filters

# p50, p90 and p99 as exact fractions: the ranks they fall between are found with integer
# arithmetic, the same in both databases, and interpolated here as percentile_cont does.
QUANTILES = ((1, 2), (9, 10), (99, 100))


def longest_life() -> timedelta:
    """The longest a proposal can stay pending under any policy version."""
    minutes = max(Policy.objects.values_list("expire_after_minutes", flat=True), default=240)
    return timedelta(minutes=minutes, hours=1)


def horizon(f: Filters) -> datetime:
    """Decisions and executions happen between a proposal's submission and its expiry.

    Bounding the joined tables by time lets PostgreSQL read only the period's rows (an index
    range on created_at) instead of hashing whole tables.
    """
    return f.until + longest_life()


def within(field: str, low: datetime, high: datetime) -> Q:
    return Q(**{f"{field}__gte": low, f"{field}__lt": high})


def proposal_filter(f: Filters, *, prefix: str = "", since: datetime | None = None) -> Q:
    """The period and the form's filters over proposals (`prefix` reaches them from a
    related model, e.g. "proposal__" from decisions)."""
    q = within(f"{prefix}created_at", since or f.since, f.until)
    if f.action:
        q &= Q(**{f"{prefix}action": f.action})
    if f.agent:
        q &= Q(**{f"{prefix}agent__slug": f.agent})
    if f.analyst:
        # Proposals this analyst decided; on decisions, `analyst_filter` narrows further.
        q &= Exists(
            Decision.objects.filter(
                proposal=OuterRef(prefix.removesuffix("__") or "pk"),
                analyst__username=f.analyst,
            )
        )
    return q


def proposals(f: Filters, *, since: datetime | None = None) -> QuerySet[Proposal]:
    """The proposals submitted in the period that the filters choose, in no order."""
    return Proposal.objects.filter(proposal_filter(f, since=since)).order_by()


def with_execution(qs: QuerySet[Proposal], f: Filters) -> QuerySet[Proposal]:
    """Proposals with their execution reachable as `run` (absent when none), the join bounded
    by time (see `horizon`)."""
    bound = within("execution__created_at", f.since, horizon(f))
    return qs.alias(run=FilteredRelation("execution", condition=bound))


def elapsed(end: str, start: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


def _seconds(value: Any) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True)
class Sample:
    """The values of one group that its percentiles need, by rank (0 = smallest)."""

    n: int
    ranked: Mapping[int, float]

    def percentiles(self) -> list[float | None]:
        """p50, p90 and p99 as percentile_cont gives them: linear interpolation between the
        two closest ranks."""
        out: list[float | None] = []
        for k, d in QUANTILES:
            low, rest = divmod(k * (self.n - 1), d)
            first = self.ranked[low]
            second = self.ranked[low + 1] if rest else first
            out.append(first + (second - first) * rest / d)
        return out


def samples(
    qs: QuerySet[Any], value: Expression | F, groupings: Mapping[str, Expression | F | None]
) -> dict[str, dict[Any, Sample]]:
    """Per grouping (name → partition key, None for everything), each group's sample of
    `value` (NULLs left out, as percentile_cont leaves them out) at the ranks QUANTILES need.

    One query: each grouping numbers the rows in its own window, and only rows at a rank some
    percentile needs come back, a handful per group.
    """
    ranked = qs.annotate(value=value).filter(value__isnull=False)
    wanted = Q()
    names = list(groupings)
    for i, name in enumerate(names):
        key = groupings[name]
        partition = [key] if key is not None else None
        rank, n = f"rank{i}", f"n{i}"
        ranked = ranked.annotate(
            **{
                f"key{i}": key if key is not None else Value(""),
                rank: Window(RowNumber(), partition_by=partition, order_by=F("value").asc()),
                n: Window(Count("*"), partition_by=partition),
            }
        )
        for k, d in QUANTILES:
            # Ranks are 1-based: floor(k(n-1)/d) + 1 and the rank above it.
            wanted |= Q(**{rank: (F(n) - 1) * k / d + 1})
            wanted |= Q(**{rank: ((F(n) - 1) * k + (d - 1)) / d + 1})
    columns = ["value"] + [f"{part}{i}" for i in range(len(names)) for part in ("key", "rank", "n")]
    found: dict[str, dict[Any, tuple[int, dict[int, float]]]] = defaultdict(dict)
    for row in ranked.filter(wanted).values_list(*columns):
        value_seconds = _seconds(row[0])
        for i, name in enumerate(names):
            key, rank, n = row[1 + 3 * i : 4 + 3 * i]
            if _needed(rank - 1, n):
                group = found[name].setdefault(key, (n, {}))
                group[1][rank - 1] = value_seconds
    return {
        name: {key: Sample(n, ranked_values) for key, (n, ranked_values) in found[name].items()}
        for name in names
    }


def _needed(position: int, n: int) -> bool:
    for k, d in QUANTILES:
        low, rest = divmod(k * (n - 1), d)
        if position == low or (rest and position == low + 1):
            return True
    return False


def band_of(bounds: list[float]) -> Case:
    """k when the confidence is at or above bounds[k-1] and below bounds[k] (0: below them
    all). The comparison is exact, as the routing function's `confidence >= auto_threshold`
    is: dividing by a band width instead puts 0.7 in the band below, as (0.7 - 0.5) / 0.1 is
    1.9999999999999996 in floating point."""
    whens = [When(confidence__gte=low, then=Value(k)) for k, low in enumerate(bounds, start=1)]
    return Case(*reversed(whens), default=Value(0))
