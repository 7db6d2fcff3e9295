"""The audit app's hand-written SQL, each statement with what it saves.

The reports' statements run on PostgreSQL and on SQLite (3.35 or later) alike. They wrap the
rows an ORM queryset selects (`rows_sql`), so that filters, time zones and datetime arithmetic
stay the ORM's, written once for both databases, and they add only what the ORM cannot say:
several groupings over one scan, windows over windows, and exact percentiles. PostgreSQL has
percentile_cont; on SQLite the same figure comes from `percentile_cont` below, registered as
an aggregate on the connection, the way Django gives SQLite the statistics it lacks.

Each statement returns a handful of rows per group where reading the underlying rows into
Python would read tens of thousands: loading one timestamp through the driver costs several
microseconds, and a page that read the period's rows spent seconds where these statements
take a fraction of one (measured on the 100,000-decision benchmark, `python -m bench.reports`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from django.db import NotSupportedError, connection, transaction
from django.db.models import FloatField, Func, QuerySet
from django.db.models.sql.compiler import SQLCompiler

# --- expressions ------------------------------------------------------------------------------


class Seconds(Func):
    """A duration expression as seconds (a float) on either database, so that statements can
    sort, compare and bucket it as a plain number."""

    output_field = FloatField()

    def as_sql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        raise NotSupportedError("the reports run on PostgreSQL or SQLite")

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        return super().as_sql(
            compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float8", **extra
        )

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        # Django subtracts datetimes on SQLite into whole microseconds.
        return super().as_sql(
            compiler, connection, template="(%(expressions)s / 1000000.0)", **extra
        )


# --- percentiles ------------------------------------------------------------------------------

FRACTIONS = (0.5, 0.9, 0.99)


def percentile_cont(values: Sequence[float], q: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class _SqlitePercentiles:
    """percentile_cont at several fractions, as an SQLite aggregate returning a JSON list."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fractions: list[float] = []

    def step(self, value: float | None, fractions: str) -> None:
        self.fractions = json.loads(fractions)
        if value is not None:
            self.values.append(value)

    def finalize(self) -> str | None:
        if not self.values:
            return None
        return json.dumps([percentile_cont(self.values, q) for q in self.fractions])


def percentiles(column: str, fractions: Sequence[float] = FRACTIONS) -> str:
    """The aggregate over `column` giving percentile_cont at each fraction (NULLs left out);
    read its result with `as_list`."""
    if connection.vendor == "postgresql":
        listed = ", ".join(f"{float(q)!r}" for q in fractions)
        return f"percentile_cont(ARRAY[{listed}]::float8[]) WITHIN GROUP (ORDER BY {column})"
    return f"soc_percentiles({column}, '{json.dumps([float(q) for q in fractions])}')"


def as_list(value: Any) -> list[float | None] | None:
    """An aggregate's percentiles as a list: PostgreSQL returns an array, SQLite JSON text."""
    if value is None or isinstance(value, list):
        return value
    return json.loads(value)


# --- running a statement over a queryset's rows -----------------------------------------------


def rows_sql(qs: QuerySet[Any]) -> tuple[str, list[Any]]:
    """A values() queryset as SQL text and parameters, to be wrapped by a statement below."""
    sql, params = qs.query.sql_with_params()
    return sql, list(params)


def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The statements sort whole periods in memory: with the default 4 MB, a month of
            # decisions spills to disk and each sort takes several times as long.
            cursor.execute("SET LOCAL work_mem = '64MB'")
            # The planner's estimates for these statements run into millions, which switches
            # on JIT compilation: it spent 0.7 s compiling a query that then ran in 0.25 s.
            cursor.execute("SET LOCAL jit = off")
        else:
            connection.connection.create_aggregate("soc_percentiles", 2, _SqlitePercentiles)
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- statements ---------------------------------------------------------------------------------


def grouped_percentiles(rows: str, groupings: int, values: int) -> str:
    """Over rows (k0, k1, …, v0, v1, …): for each grouping i and each group of k_i, the count
    of rows and the percentiles of every value, as (i, k_i as text, count, p(v0), p(v1), …).

    Several breakdowns from one scan of the period, which the ORM cannot say (it would read
    the period once per breakdown; GROUPING SETS is PostgreSQL's alone).
    """
    aggregates = ", ".join(percentiles(f"v{j}") for j in range(values))
    grouped = [
        f"SELECT {i}, CAST(k{i} AS TEXT), count(*), {aggregates} FROM r GROUP BY k{i}"  # noqa: S608
        for i in range(groupings)
    ]
    return f"WITH r AS ({rows}) " + " UNION ALL ".join(grouped)


# The queue of proposals sent to analysts over rows (s, e): seconds from the period's start to
# the arrival (0 for one already pending) and to the departure (decision, expiry or withdrawal;
# NULL while pending). Every arrival (+1) and departure (-1) before the end, in time order; the
# running sum is the depth at each moment, so its maximum is the true peak, not the highest of
# a few samples. At the same instant a departure counts before an arrival. Per interval of
# `width` seconds: the net change, the highest depth reached in it and when it was first
# reached. Saves reading every proposal of the period to walk the queue in Python (1.2 s on
# the benchmark's month, against 0.3 s here).
QUEUE_DEPTH = """
WITH q AS ({rows}), moves AS (
    SELECT CASE WHEN s > 0 THEN s ELSE 0 END AS t, 1 AS delta FROM q
    UNION ALL SELECT e, -1 FROM q WHERE e IS NOT NULL AND e < %s
), running AS (
    SELECT floor(t / %s) AS bucket, t, delta,
           sum(delta) OVER (ORDER BY t, delta ROWS UNBOUNDED PRECEDING) AS depth
    FROM moves
), peaks AS (
    SELECT bucket, sum(delta) AS net, max(depth) AS most FROM running GROUP BY bucket
)
SELECT p.bucket, p.net, p.most, min(r.t)
FROM peaks p JOIN running r ON r.bucket = p.bucket AND r.depth = p.most
GROUP BY p.bucket, p.net, p.most
"""
