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

from django.db import NotSupportedError, connection, connections, transaction
from django.db.models import FloatField, Func, QuerySet
from django.db.models.sql.compiler import SQLCompiler

from soc_console import replica

from .models import AuditEvent

# --- expressions ------------------------------------------------------------------------------


class Seconds(Func):
    """A duration expression as seconds (a float) on either database, so that statements can
    sort, compare and bucket it as a plain number."""

    output_field = FloatField()

    def as_sql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        raise NotSupportedError("the reports run on PostgreSQL or SQLite")

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        # date_part gives a double directly; EXTRACT has given a numeric since PostgreSQL 14,
        # and the numeric arithmetic and its cast cost the 28-day fatigue statement 5-10 %.
        return super().as_sql(
            compiler, connection, template="date_part('epoch', %(expressions)s)", **extra
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
    # A report's statement runs where its ORM reads do: on the replica, when there is one.
    alias = replica.alias()
    connection = connections[alias]
    with transaction.atomic(using=alias), connection.cursor() as cursor:
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


# Rebuilds of one month's report rollups take turns: each rewrites the month's row from its
# days' (audit.reports.rollup). The first key names the lock's purpose; SQLite writes one
# transaction at a time anyway.
ROLLUP_LOCK = 0x524F4C4C  # "ROLL"


def rollup_lock(year: int, month: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [ROLLUP_LOCK, year * 100 + month]
            )


def band_case(hour: str, bands: Sequence[tuple[str, int, int]]) -> tuple[str, list[str]]:
    """CASE naming the band of the day an hour falls in; the hours are integers the settings
    checked, the names parameters."""
    whens = []
    for _name, first, last in bands:
        test = (
            f"{hour} >= {int(first)} AND {hour} < {int(last)}"
            if first < last
            else f"({hour} >= {int(first)} OR {hour} < {int(last)})"
        )
        whens.append(f"WHEN {test} THEN %s")
    return f"CASE {' '.join(whens)} END", [name for name, _, _ in bands]


# Approval fatigue over rows (a: analyst, t: seconds, approve and counted and undone: 0 or 1,
# card, hour and dow: local hour and ISO weekday, hour_key: the local clock hour). Shifts are
# runs of one analyst's decisions with no gap longer than {gap} s, built from all of them;
# an approval streak ends at any rejection. Per analyst (band NULL, with the longest streak)
# and per analyst and the band of the day a shift started in, over the counted decisions:
# decisions, approvals, active hours, shifts, decisions with a time on card, its median,
# under {rubber} s, the median in a shift's first and last hour (shifts of 2 h or more),
# approvals rolled back, and decisions after hours. Saves reading every decision of the
# period to walk the shifts in Python (2 s on the benchmark's month, against 0.5 s here).
FATIGUE = """
WITH base AS ({rows}), marked AS (
    SELECT base.*, t - lag(t) OVER (PARTITION BY a ORDER BY t) AS gap FROM base
), numbered AS (
    SELECT marked.*,
           sum(CASE WHEN gap IS NULL OR gap > {gap} THEN 1 ELSE 0 END) OVER w AS shift_no,
           sum(1 - approve) OVER w AS run_no
    FROM marked WINDOW w AS (PARTITION BY a ORDER BY t)
), shifts AS (
    SELECT a, shift_no, min(t) AS started, max(t) AS ended,
           max(CASE WHEN gap IS NULL OR gap > {gap} THEN hour END) AS start_hour
    FROM numbered GROUP BY a, shift_no
), streaks AS (
    SELECT a, max(run) AS longest FROM (
        SELECT a, run_no, sum(approve * counted) AS run FROM numbered GROUP BY a, run_no
    ) r GROUP BY a
), placed AS (
    SELECT n.a, n.approve, n.card, n.undone, n.hour, n.dow, n.hour_key, n.shift_no,
           {band} AS band,
           CASE WHEN s.ended - s.started >= 7200 AND n.t < s.started + 3600 THEN 1 ELSE 0 END
               AS first_hour,
           CASE WHEN s.ended - s.started >= 7200 AND n.t > s.ended - 3600 THEN 1 ELSE 0 END
               AS last_hour
    FROM numbered n JOIN shifts s ON s.a = n.a AND s.shift_no = n.shift_no
    WHERE n.counted = 1
)
{grouped}
"""

# The figures per analyst (band NULL, with the longest streak) and per analyst and band (streak
# NULL). PostgreSQL groups both in one pass over `placed` (grouping sets: 14 % less time for
# the benchmark's 28 days, 0.36 against 0.42 s); SQLite, which has no grouping sets, takes the
# union of the two groupings. The rows are the same (the suite runs on both).
_FATIGUE_GROUPED_SETS = """
SELECT p.a, CASE WHEN GROUPING(p.band) = 0 THEN p.band END, {figures},
       CASE WHEN GROUPING(p.band) = 1 THEN max(st.longest) END
FROM placed p LEFT JOIN streaks st ON st.a = p.a
GROUP BY GROUPING SETS ((p.a), (p.a, p.band))
"""
_FATIGUE_GROUPED_UNION = """
SELECT g.*, st.longest FROM (
    SELECT p.a, NULL AS band, {figures} FROM placed p GROUP BY p.a
) g LEFT JOIN streaks st ON st.a = g.a
UNION ALL
SELECT p.a, p.band, {figures}, NULL FROM placed p GROUP BY p.a, p.band
"""


def fatigue(rows: str, *, gap: float, rubber: float, office: tuple[int, int], band: str) -> str:
    median = percentiles  # of one fraction: [the median]
    figures = ", ".join(
        [
            "count(*)",
            "sum(p.approve)",
            "count(DISTINCT p.hour_key)",
            "count(DISTINCT p.shift_no)",
            "count(p.card)",
            median("p.card", (0.5,)),
            f"sum(CASE WHEN p.card < {float(rubber)!r} THEN 1 ELSE 0 END)",
            "count(CASE WHEN p.first_hour = 1 THEN p.card END)",
            median("CASE WHEN p.first_hour = 1 THEN p.card END", (0.5,)),
            "count(CASE WHEN p.last_hour = 1 THEN p.card END)",
            median("CASE WHEN p.last_hour = 1 THEN p.card END", (0.5,)),
            "sum(p.approve * p.undone)",
            f"sum(CASE WHEN p.dow >= 6 OR p.hour < {int(office[0])} OR p.hour >= "
            f"{int(office[1])} THEN 1 ELSE 0 END)",
        ]
    )
    grouped = _FATIGUE_GROUPED_SETS if connection.vendor == "postgresql" else _FATIGUE_GROUPED_UNION
    return FATIGUE.format(
        rows=rows, gap=float(gap), band=band, grouped=grouped.format(figures=figures)
    )


# --- the audit chain ----------------------------------------------------------------------------

# The table the chain lives in, from the model rather than spelled out.
_EVENTS = AuditEvent._meta.db_table
EVENT_COLUMNS = (
    "seq",
    "at",
    "actor_type",
    "actor",
    "event_type",
    "proposal_id",
    "data",
    "prev_hash",
    "hash",
)

# The chain's last event, with the right to append after it until commit: audit_chain_head()
# (migration 0004) takes a transaction-level advisory lock and then reads the last event on a
# fresh snapshot. One function call instead of a lock and a query from here.
CHAIN_HEAD = "SELECT head_seq, head_hash FROM audit_chain_head()"

# One event, appended in every service transaction: a plain INSERT with the data already as
# its canonical JSON text, which saves the ORM's save() machinery on the hottest write path.
APPEND_EVENT = (
    f"INSERT INTO {_EVENTS} ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608
    "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id"
)

# Every event in chain order, for verification on a database other than PostgreSQL.
ALL_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {_EVENTS} ORDER BY seq"  # noqa: S608

# COPY streams the table as text, the cheapest way out of the server (verify_audit checks the
# benchmark's 320,000 events in 6 s, two processes each reading its own range). Timestamps
# come as ISO text in UTC (`COPY_SESSION`), which `audit.log` reshapes at less cost to the
# server than formatting them there.
COPY_SESSION = ("SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO, YMD'")


def copy_events(low: int | None = None, high: int | None = None) -> str:
    """COPY of the events from seq `low` to `high` (both included; None: no bound)."""
    bounds = [f"seq >= {int(low)}"] if low is not None else []
    bounds += [f"seq <= {int(high)}"] if high is not None else []
    where = f"WHERE {' AND '.join(bounds)} " if bounds else ""
    select = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {_EVENTS} {where}ORDER BY seq"  # noqa: S608
    return f"COPY ({select}) TO STDOUT"


# --- generated history ----------------------------------------------------------------------


def copy_rows(table: str, columns: Sequence[str]) -> str:
    """COPY into a table: an order of magnitude faster than INSERT for the million-row
    benchmark history."""
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN"


def insert_rows(table: str, columns: Sequence[str]) -> str:
    """A multi-row INSERT for SQLite, which has no COPY."""
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


# --- database roles (PostgreSQL) ----------------------------------------------------------------

# Whether a role is a superuser or a member of the current role (the owner), and who and where
# the owner is: the facts that decide whether the role may run the app.
ROLE_FACTS = (
    "SELECT r.rolsuper, pg_has_role(r.oid, (SELECT oid FROM pg_roles "
    "WHERE rolname = current_user), 'MEMBER'), current_user, current_schema() "
    "FROM pg_roles AS r WHERE r.rolname = %s"
)
_RELATIONS = (
    "SELECT {columns} FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S') "
    "AND pg_get_userbyid(c.relowner) = {owner} ORDER BY c.relname"
)
# Tables, views and sequences the owner holds: what the runtime role is granted rights on.
OWNED_BY_CURRENT_ROLE = _RELATIONS.format(columns="c.relname, c.relkind", owner="current_user")
# Those a given role holds: the runtime role must hold none.
OWNED_BY_ROLE = _RELATIONS.format(columns="c.relname", owner="%s")


def grant_schema(schema: str, role: str) -> str:
    """Identifiers already quoted by the caller."""
    return f"GRANT USAGE ON SCHEMA {schema} TO {role}"


def grant_sequence(sequence: str, role: str) -> str:
    return f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {role}"


def grant_table(table: str, role: str, rights: str) -> list[str]:
    # Start from nothing, so that a broader grant made by hand does not linger.
    return [
        f"REVOKE ALL ON TABLE {table} FROM {role}",
        f"GRANT {rights} ON TABLE {table} TO {role}",
    ]
