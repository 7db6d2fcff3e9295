"""The managers' reports: approval latency, approval fatigue, agent trust, threshold what-if.

Reads only, selectors style: each report function takes the filters and returns plain data
(figures, tables, a chart description and a finding in words). Views render it; CSV exports
reuse the same rows.

On PostgreSQL every percentile, rate and streak is computed in the database (percentile_cont,
FILTER, GROUPING SETS, window functions for shifts and approval streaks), and the database
returns only one row per group. SQLite, the zero-configuration local database, has none of
those, so there the same figures are computed in Python from the filtered rows
(`_py_*` functions): correct, but only fit for a demo-sized history.

Honest statistics: a figure computed from fewer than its minimum sample says "not enough
data" instead of a number (a p99 from 12 values is just the maximum).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents.models import Agent, Policy
from approvals import catalogue

# Minimum sample per figure. A median from 20 values is rough but useful; tail percentiles need
# many more values before they mean anything beyond "the slowest one".
MIN_SAMPLE = 20
MIN_SAMPLE_P90 = 50
MIN_SAMPLE_P99 = 200
# An agent earns level 3 at a threshold only with this many decided proposals above it, and
# with almost all of them approved and none of them undone.
PROMOTE_MIN = 50
PROMOTE_GOOD_SHARE = 0.97
DEMOTE_APPROVAL_BELOW = 0.70
DEMOTE_BAD_OUTCOME_ABOVE = 0.10
# A gap longer than this between two decisions of one analyst ends a shift.
SHIFT_GAP = timedelta(hours=3)
# Working hours: decisions outside them count as after-hours load.
OFFICE_HOURS = (8, 18)
THRESHOLDS = [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
BANDS = [(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0)]
UNDONE = ("rolled_back", "rolling_back", "rollback_failed")
DEFAULT_DAYS = 28

NOT_ENOUGH = "not enough data"


# --- plain data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A number with the sample it came from; shown as words when the sample is too small."""

    value: float | None
    n: int
    unit: str = "s"  # "s" durations, "%" shares, "" counts and ratios

    @property
    def text(self) -> str:
        if self.value is None:
            return NOT_ENOUGH
        if self.unit == "s":
            return duration(self.value)
        if self.unit == "%":
            return f"{self.value * 100:.0f}%"
        if self.unit == "/h":
            return f"{self.value:.1f}/h"
        return f"{self.value:g}"

    @property
    def csv(self) -> str:
        if self.value is None:
            return NOT_ENOUGH
        if self.unit == "%":
            return f"{self.value:.4f}"
        return f"{self.value:.3f}" if isinstance(self.value, float) else str(self.value)

    def __str__(self) -> str:
        return self.text


def figure(value: float | None, n: int, *, minimum: int = MIN_SAMPLE, unit: str = "s") -> Figure:
    return Figure(value if (n >= minimum and value is not None) else None, n, unit)


def share(part: int, whole: int, *, minimum: int = MIN_SAMPLE) -> Figure:
    return figure(part / whole if whole else None, whole, minimum=minimum, unit="%")


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]
    folded: bool = False  # long detail tables start closed on the page; the CSV has them all


@dataclass
class Chart:
    """What to draw; audit.charts turns it into SVG."""

    kind: str  # "bars" (grouped horizontal bars) or "lines"
    title: str
    labels: list[str]
    series: dict[str, list[float | None]]
    unit: str = "s"
    reference: bool = False  # draw the diagonal on a calibration chart


@dataclass
class Report:
    name: str
    title: str
    finding: str
    flagged: bool
    chart: Chart
    tables: list[Table]
    notes: list[str] = field(default_factory=list)
    extra_charts: list[Chart] = field(default_factory=list)
    # The finding's separate points, listed one per line on the page when there are several.
    points: list[str] = field(default_factory=list)

    def csv_rows(self) -> Iterable[list[str]]:
        for table in self.tables:
            yield ["table", *table.headers]
            for row in table.rows:
                yield [
                    table.title,
                    *(cell.csv if isinstance(cell, Figure) else cell for cell in row),
                ]


@dataclass(frozen=True)
class Filters:
    since: datetime
    until: datetime
    action: str | None = None
    agent: str | None = None  # slug
    analyst: str | None = None  # username
    sla_minutes: int = 15
    threshold: float = 0.8
    scope: str = "granted"  # what-if: "granted" level 3/4 grants, or "reversible" all of them

    @classmethod
    def default(cls) -> Filters:
        now = timezone.now()
        return cls(since=now - timedelta(days=DEFAULT_DAYS), until=now)


def _pg() -> bool:
    return connection.vendor == "postgresql"


def _tz() -> str:
    return settings.TIME_ZONE


def _rows(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with transaction.atomic(), connection.cursor() as cursor:
        # Percentiles sort in memory; the default 4 MB would spill to disk on large windows.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(sql, params)
        return cursor.fetchall()


def _where(
    f: Filters, *, time_column: str = "p.created_at", analyst_join: bool = False
) -> tuple[str, dict[str, Any]]:
    """The filter clause over proposals p joined to agents a (and decisions d if joined)."""
    parts = [f"{time_column} >= %(since)s", f"{time_column} < %(until)s"]
    longest = _longest_life()
    params: dict[str, Any] = {
        "since": f.since,
        "until": f.until,
        "tz": _tz(),
        # Decisions and executions happen between a proposal's submission and its expiry.
        # Bounding the joined tables by time lets PostgreSQL read only the period's rows
        # instead of hashing whole tables.
        "lookback": f.since - longest,
        "horizon": f.until + longest,
    }
    if f.action:
        parts.append("p.action = %(action)s")
        params["action"] = f.action
    if f.agent:
        parts.append("a.slug = %(agent)s")
        params["agent"] = f.agent
    if f.analyst:
        params["analyst"] = f.analyst
        if analyst_join:
            parts.append("u.username = %(analyst)s")
        else:
            parts.append(
                "EXISTS (SELECT 1 FROM approvals_decision fd JOIN auth_user fu "
                "ON fu.id = fd.analyst_id WHERE fd.proposal_id = p.id "
                "AND fu.username = %(analyst)s)"
            )
    return " AND ".join(parts), params


def _longest_life() -> timedelta:
    """The longest a proposal can stay pending under any policy version."""
    minutes = max(Policy.objects.values_list("expire_after_minutes", flat=True), default=240)
    return timedelta(minutes=minutes, hours=1)


# Confidence band against THRESHOLDS: k means at or above THRESHOLDS[k-1] (0: below them all).
BAND_SQL = "width_bucket(p.confidence + 1e-9, %(thresholds)s::float8[])"
D_BOUND = "d.created_at >= %(since)s AND d.created_at < %(horizon)s"
E_BOUND = "e.created_at >= %(since)s AND e.created_at < %(horizon)s"


def percentile(values: Sequence[float], q: float) -> float | None:
    """percentile_cont: linear interpolation between the closest ranks (the SQLite path)."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _pcts(n: int, values: Sequence[float | None] | None) -> list[Figure]:
    p50, p90, p99 = values if values else (None, None, None)
    return [
        figure(p50, n),
        figure(p90, n, minimum=MIN_SAMPLE_P90),
        figure(p99, n, minimum=MIN_SAMPLE_P99),
    ]


def _py_pcts(values: list[float]) -> list[float | None]:
    return [percentile(values, q) for q in (0.5, 0.9, 0.99)]


def _seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


# --- raw rows for the SQLite path ------------------------------------------------------------


def _py_proposals(f: Filters, *, since: datetime | None = None) -> list[dict[str, Any]]:
    from approvals.models import Proposal

    qs = Proposal.objects.filter(created_at__gte=since or f.since, created_at__lt=f.until)
    if f.action:
        qs = qs.filter(action=f.action)
    if f.agent:
        qs = qs.filter(agent__slug=f.agent)
    if f.analyst:
        qs = qs.filter(decisions__analyst__username=f.analyst).distinct()
    return list(
        qs.values(
            "id",
            "action",
            "agent__slug",
            "status",
            "confidence",
            "criticality",
            "required_approvals",
            "created_at",
            "decided_at",
            "escalated_at",
            "expires_at",
            "execution__status",
            "execution__started_at",
            "execution__finished_at",
        )
    )


def _py_decisions(f: Filters, *, by_decision_time: bool) -> list[dict[str, Any]]:
    from approvals.models import Decision

    if by_decision_time:
        qs = Decision.objects.filter(created_at__gte=f.since, created_at__lt=f.until)
    else:
        qs = Decision.objects.filter(
            proposal__created_at__gte=f.since, proposal__created_at__lt=f.until
        )
    if f.action:
        qs = qs.filter(proposal__action=f.action)
    if f.agent:
        qs = qs.filter(proposal__agent__slug=f.agent)
    if f.analyst:
        qs = qs.filter(analyst__username=f.analyst)
    return list(
        qs.order_by("analyst_id", "created_at").values(
            "analyst__username",
            "proposal_id",
            "verdict",
            "seconds_on_card",
            "created_at",
            "proposal__created_at",
            "proposal__execution__status",
        )
    )


# --- approval latency ------------------------------------------------------------------------

# Grouping keys in the "C" collation: byte comparison sorts several times faster than the
# locale's, and the order of a group key does not matter here.
_LAT_GROUPS = """
SELECT p.action COLLATE "C" AS action, a.slug COLLATE "C" AS slug,
       extract(hour FROM p.created_at AT TIME ZONE %(tz)s)::int AS hour,
       extract(epoch FROM p.decided_at - p.created_at) AS secs
FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id
WHERE {where} AND p.status IN ('approved', 'rejected')
"""


def latency(f: Filters) -> Report:
    """Submission → decision, by action, agent, analyst and hour of day, plus SLA and queue."""
    groups: dict[str, list[tuple[str, int, list[float | None] | None]]] = defaultdict(list)
    if _pg():
        where, params = _where(f)
        params["sla"] = f.sla_minutes
        sql = (
            "SELECT GROUPING(action, slug, hour), action, slug, hour, count(*), "  # noqa: S608
            "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY secs) "
            f"FROM ({_LAT_GROUPS.format(where=where)}) x "
            "GROUP BY GROUPING SETS ((), (action), (slug), (hour))"
        )
        for _g, action, slug, hour, n, pcts in _rows(sql, params):
            if action is not None:
                groups["action"].append((action, n, pcts))
            elif slug is not None:
                groups["agent"].append((slug, n, pcts))
            elif hour is not None:
                groups["hour"].append((f"{hour:02d}:00", n, pcts))
            else:
                groups["all"].append(("all", n, pcts))
        analyst_where, _ = _where(f, analyst_join=True)
        by_analyst = _rows(
            "SELECT d.analyst_id, count(*), percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP "  # noqa: S608
            "(ORDER BY extract(epoch FROM d.created_at - p.created_at)) "
            "FROM approvals_decision d JOIN approvals_proposal p ON p.id = d.proposal_id "
            "JOIN agents_agent a ON a.id = p.agent_id JOIN auth_user u ON u.id = d.analyst_id "
            f"WHERE {analyst_where} AND {D_BOUND} GROUP BY d.analyst_id",
            params,
        )
        from django.contrib.auth.models import User

        names = dict(
            User.objects.filter(pk__in=[row[0] for row in by_analyst]).values_list("pk", "username")
        )
        groups["analyst"] = [(names[pk], n, pcts) for pk, n, pcts in by_analyst]
        two = _rows(
            "SELECT count(*), "  # noqa: S608
            "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY first_s), "
            "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY final_s) FROM ("
            "SELECT extract(epoch FROM min(d.created_at) - p.created_at) AS first_s, "
            "extract(epoch FROM p.decided_at - p.created_at) AS final_s "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            "JOIN approvals_decision d ON d.proposal_id = p.id "
            f"WHERE {where} AND {D_BOUND} AND p.required_approvals >= 2 "
            "AND p.status = 'approved' "
            "GROUP BY p.id) x",
            params,
        )[0]
        counts = _rows(
            "SELECT count(*) FILTER (WHERE p.expires_at IS NOT NULL), "  # noqa: S608
            "count(*) FILTER (WHERE p.status IN ('approved', 'rejected')), "
            "count(*) FILTER (WHERE p.status IN ('approved', 'rejected') "
            "  AND p.decided_at - p.created_at > make_interval(mins => %(sla)s)), "
            "count(*) FILTER (WHERE p.status = 'pending' "
            "  AND now() - p.created_at > make_interval(mins => %(sla)s)), "
            "count(*) FILTER (WHERE p.status = 'expired'), "
            "count(*) FILTER (WHERE p.escalated_at IS NOT NULL) "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"WHERE {where}",
            params,
        )[0]
        machine = _rows(
            "SELECT p.status, count(*), "  # noqa: S608
            "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM e.started_at - p.decided_at)), "
            "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM e.finished_at - p.decided_at)) "
            "FROM approvals_execution e JOIN approvals_proposal p ON p.id = e.proposal_id "
            "JOIN agents_agent a ON a.id = p.agent_id "
            f"WHERE {where} AND {E_BOUND} AND e.started_at IS NOT NULL "
            "AND p.status IN ('approved', 'auto_approved') GROUP BY p.status",
            params,
        )
    else:
        rows = _py_proposals(f)
        decided = [r for r in rows if r["status"] in ("approved", "rejected")]
        tz = ZoneInfo(_tz())

        def collect(key: str, label: Any) -> None:
            bucket: dict[str, list[float]] = defaultdict(list)
            for r in decided:
                bucket[label(r)].append(_seconds(r["decided_at"] - r["created_at"]) or 0.0)
            groups[key] = [(k, len(v), _py_pcts(v)) for k, v in bucket.items()]

        collect("all", lambda r: "all")
        collect("action", lambda r: r["action"])
        collect("agent", lambda r: r["agent__slug"])
        collect("hour", lambda r: f"{r['created_at'].astimezone(tz).hour:02d}:00")
        bucket: dict[str, list[float]] = defaultdict(list)
        for d in _py_decisions(f, by_decision_time=False):
            bucket[d["analyst__username"]].append(
                (d["created_at"] - d["proposal__created_at"]).total_seconds()
            )
        groups["analyst"] = [(k, len(v), _py_pcts(v)) for k, v in bucket.items()]
        from approvals.models import Decision

        firsts: dict[Any, datetime] = {}
        ids = [r["id"] for r in rows if r["required_approvals"] >= 2 and r["status"] == "approved"]
        for pid, at in Decision.objects.filter(proposal_id__in=ids).values_list(
            "proposal_id", "created_at"
        ):
            firsts[pid] = min(at, firsts.get(pid, at))
        pairs = [(r, firsts.get(r["id"])) for r in rows if r["id"] in set(ids)]
        first_s = [(at - r["created_at"]).total_seconds() for r, at in pairs if at]
        final_s = [(r["decided_at"] - r["created_at"]).total_seconds() for r, _ in pairs]
        two = (len(pairs), _py_pcts(first_s), _py_pcts(final_s))
        sla = timedelta(minutes=f.sla_minutes)
        now = timezone.now()
        counts = (
            sum(1 for r in rows if r["expires_at"] is not None),
            len(decided),
            sum(1 for r in decided if r["decided_at"] - r["created_at"] > sla),
            sum(1 for r in rows if r["status"] == "pending" and now - r["created_at"] > sla),
            sum(1 for r in rows if r["status"] == "expired"),
            sum(1 for r in rows if r["escalated_at"] is not None),
        )
        machine = []
        for status in ("approved", "auto_approved"):
            ran = [
                r
                for r in rows
                if r["status"] == status and r["execution__started_at"] and r["decided_at"]
            ]
            if ran:
                machine.append(
                    (
                        status,
                        len(ran),
                        _py_pcts(
                            [
                                (r["execution__started_at"] - r["decided_at"]).total_seconds()
                                for r in ran
                            ]
                        ),
                        _py_pcts(
                            [
                                (r["execution__finished_at"] - r["decided_at"]).total_seconds()
                                for r in ran
                                if r["execution__finished_at"]
                            ]
                        ),
                    )
                )
    queue = queue_depth(f)
    queued, decided_n, late, late_pending, expired, escalated = counts
    overall = groups["all"][0] if groups["all"] else ("all", 0, None)
    o50, o90, _o99 = _pcts(overall[1], overall[2])
    breaches = late + late_pending + expired
    breach_share = share(breaches, queued)
    if overall[1] < MIN_SAMPLE:
        finding = f"Not enough data: {overall[1]} decided proposals in this period."
        flagged = False
    else:
        finding = (
            f"Half of {overall[1]} proposals were decided within {o50}, 90% within {o90}; "
            f"{breaches} of {queued} queued proposals ({breach_share}) broke the "
            f"{f.sla_minutes}-minute SLA, {expired} expired unanswered and {escalated} "
            "were escalated."
        )
        slow = [
            (label, pcts[0])
            for label, n, pcts in groups["hour"]
            if n >= MIN_SAMPLE and pcts and pcts[0] is not None
        ]
        if slow:
            worst = max(slow, key=lambda item: item[1])
            finding += f" Slowest hour of day: {worst[0]} (median {duration(worst[1])})."
        flagged = breach_share.value is not None and breach_share.value > 0.1

    def table(title: str, key: str, sort_numeric: bool = False) -> Table:
        items = sorted(groups[key], key=lambda item: item[0])
        return Table(
            title,
            [title.split(" by ")[-1], "decided", "p50", "p90", "p99"],
            [[label, n, *_pcts(n, pcts)] for label, n, pcts in items],
        )

    first = two[1] if two[0] else None
    final = two[2] if two[0] else None
    tables = [
        Table(
            "Latency overall",
            ["measure", "count", "p50", "p90", "p99"],
            [
                ["submission → final decision", overall[1], *_pcts(overall[1], overall[2])],
                ["two-person: → first approval", two[0], *_pcts(two[0], first)],
                ["two-person: → final approval", two[0], *_pcts(two[0], final)],
                *[
                    [f"{status.replace('_', '-')} → execution started", n, *_pcts(n, s)]
                    for status, n, s, _fin in machine
                ],
                *[
                    [f"{status.replace('_', '-')} → execution finished", n, *_pcts(n, fin)]
                    for status, n, _s, fin in machine
                ],
            ],
        ),
        Table(
            "SLA and queue",
            ["measure", "count"],
            [
                ["queued for a human", queued],
                ["decided", decided_n],
                [f"decided after {f.sla_minutes} min (SLA breach)", late],
                [f"still pending after {f.sla_minutes} min", late_pending],
                ["expired unanswered", expired],
                ["escalated", escalated],
                ["peak queue depth", max((d for _, d in queue), default=0)],
            ],
        ),
        table("Latency by action", "action"),
        table("Latency by agent", "agent"),
        table("Latency by analyst", "analyst"),
        Table(**{**table("Latency by hour of day", "hour").__dict__, "folded": True}),
        Table("Queue depth over time", ["time", "pending"], [[t, d] for t, d in queue], True),
    ]
    hours = sorted(groups["hour"], key=lambda item: item[0])
    chart = Chart(
        "bars",
        "Median and p90 time to decision by hour of day",
        [label for label, _, _ in hours],
        {
            "p50": [p.value for p in (_pcts(n, v)[0] for _, n, v in hours)],
            "p90": [p.value for p in (_pcts(n, v)[1] for _, n, v in hours)],
        },
    )
    queue_chart = Chart(
        "lines",
        "Queue depth over time",
        [t for t, _ in queue],
        {"pending": [float(d) for _, d in queue]},
        unit="",
    )
    return Report(
        "latency",
        "Approval latency",
        finding,
        flagged,
        chart,
        tables,
        notes=[
            "Latency is measured from submission to the final decision; by analyst, to that "
            f"analyst's own decision. SLA: {f.sla_minutes} min. Queue depth is counted at the "
            "end of each interval.",
        ],
        extra_charts=[queue_chart],
    )


def _bucket_width(f: Filters) -> timedelta:
    span = f.until - f.since
    if span <= timedelta(days=3):
        return timedelta(hours=1)
    if span <= timedelta(days=45):
        return timedelta(hours=6)
    return timedelta(days=1)


def queue_depth(f: Filters) -> list[tuple[str, int]]:
    """Pending proposals at the end of each time bucket: arrivals minus departures, summed."""
    width = _bucket_width(f)
    longest = max(Policy.objects.values_list("expire_after_minutes", flat=True), default=240)
    # A proposal pending at `since` was submitted at most one expiry period earlier.
    lookback = f.since - timedelta(minutes=longest)
    fmt = "%m-%d %H:%M" if width < timedelta(days=1) else "%Y-%m-%d"
    if _pg():
        where, params = _where(f)
        where = where.replace("p.created_at >= %(since)s", "p.created_at >= %(lookback)s")
        params.update(lookback=lookback, width=width)
        rows = _rows(
            "WITH q AS (SELECT p.created_at AS s, p.decided_at AS e "  # noqa: S608
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"WHERE {where} AND p.expires_at IS NOT NULL), "
            "moves AS (SELECT greatest(s, %(since)s) AS t, 1 AS delta FROM q "
            "UNION ALL SELECT greatest(e, %(since)s), -1 FROM q "
            "WHERE e IS NOT NULL AND e < %(until)s) "
            "SELECT date_bin(%(width)s, t, %(since)s) AS bucket, sum(delta) "
            "FROM moves GROUP BY bucket ORDER BY bucket",
            params,
        )
        moves = {bucket: int(delta) for bucket, delta in rows}
    else:
        moves = defaultdict(int)
        for r in _py_proposals(f, since=lookback):
            if r["expires_at"] is None:
                continue
            start = max(r["created_at"], f.since)
            moves[f.since + width * ((start - f.since) // width)] += 1
            if r["decided_at"] is not None and r["decided_at"] < f.until:
                end = max(r["decided_at"], f.since)
                moves[f.since + width * ((end - f.since) // width)] -= 1
    depth = 0
    series = []
    at = f.since
    tz = ZoneInfo(_tz())
    while at < f.until:
        depth += moves.get(at, 0)
        series.append(((at + width).astimezone(tz).strftime(fmt), depth))
        at += width
    return series


# --- approval fatigue ------------------------------------------------------------------------

_FATIGUE_SQL = """
WITH base AS (
    SELECT d.analyst_id, d.created_at, d.verdict, d.seconds_on_card AS card,
           d.created_at AT TIME ZONE %(tz)s AS local_at,
           coalesce(e.status IN ('rolled_back', 'rolling_back', 'rollback_failed'), false)
               AS undone,
           d.created_at - lag(d.created_at) OVER w AS gap
    FROM approvals_decision d
    JOIN approvals_proposal p ON p.id = d.proposal_id
    JOIN agents_agent a ON a.id = p.agent_id
    JOIN auth_user u ON u.id = d.analyst_id
    LEFT JOIN approvals_execution e ON e.proposal_id = d.proposal_id
        AND e.created_at >= %(lookback)s AND e.created_at < %(horizon)s
    WHERE {where} AND p.created_at >= %(lookback)s AND p.created_at < %(until)s
    WINDOW w AS (PARTITION BY d.analyst_id ORDER BY d.created_at)
), marked AS (
    SELECT *,
           sum(CASE WHEN gap IS NULL OR gap > %(shift_gap)s THEN 1 ELSE 0 END) OVER w AS shift_no,
           sum(CASE WHEN verdict = 'reject' THEN 1 ELSE 0 END) OVER w AS run_no
    FROM base
    WINDOW w AS (PARTITION BY analyst_id ORDER BY created_at)
), shifts AS (
    SELECT analyst_id, shift_no, min(created_at) AS started, max(created_at) AS ended,
           extract(hour FROM min(local_at)) AS start_hour
    FROM marked GROUP BY analyst_id, shift_no
), streaks AS (
    SELECT analyst_id, max(run) AS longest FROM (
        SELECT analyst_id, run_no, count(*) FILTER (WHERE verdict = 'approve') AS run
        FROM marked GROUP BY analyst_id, run_no
    ) r GROUP BY analyst_id
), rows AS (
    SELECT m.*,
           CASE WHEN s.start_hour >= 5 AND s.start_hour < 12 THEN 'day'
                WHEN s.start_hour >= 12 AND s.start_hour < 19 THEN 'afternoon'
                ELSE 'night' END AS band,
           s.ended - s.started >= interval '2 hours'
               AND m.created_at < s.started + interval '1 hour' AS first_hour,
           s.ended - s.started >= interval '2 hours'
               AND m.created_at > s.ended - interval '1 hour' AS last_hour
    FROM marked m JOIN shifts s USING (analyst_id, shift_no)
)
SELECT r.analyst_id, r.band, GROUPING(r.band),
       count(*), count(*) FILTER (WHERE verdict = 'approve'),
       count(DISTINCT date_trunc('hour', created_at)),
       count(DISTINCT shift_no),
       count(card),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY card),
       count(*) FILTER (WHERE card < %(rubber)s),
       count(card) FILTER (WHERE first_hour),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY card) FILTER (WHERE first_hour),
       count(card) FILTER (WHERE last_hour),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY card) FILTER (WHERE last_hour),
       count(*) FILTER (WHERE verdict = 'approve' AND undone),
       count(*) FILTER (WHERE extract(isodow FROM local_at) >= 6
                        OR extract(hour FROM local_at) < %(office_start)s
                        OR extract(hour FROM local_at) >= %(office_end)s),
       max(st.longest)
FROM rows r LEFT JOIN streaks st ON st.analyst_id = r.analyst_id
GROUP BY GROUPING SETS ((r.analyst_id), (r.analyst_id, r.band))
"""


@dataclass
class FatigueRow:
    analyst: str
    shift: str
    decisions: int
    approvals: int
    active_hours: int
    shifts: int
    carded: int
    median_card: float | None
    rubber: int
    first_n: int
    first_median: float | None
    last_n: int
    last_median: float | None
    undone: int
    after_hours: int
    longest_streak: int | None = None

    @property
    def approval_rate(self) -> Figure:
        return share(self.approvals, self.decisions)

    @property
    def per_hour(self) -> Figure:
        rate = self.decisions / self.active_hours if self.active_hours else None
        return figure(rate, self.decisions, unit="/h")

    @property
    def card(self) -> Figure:
        return figure(self.median_card, self.carded)

    @property
    def rubber_share(self) -> Figure:
        return share(self.rubber, self.carded)

    @property
    def first_hour(self) -> Figure:
        return figure(self.first_median, self.first_n)

    @property
    def last_hour(self) -> Figure:
        return figure(self.last_median, self.last_n)

    @property
    def after_hours_share(self) -> Figure:
        return share(self.after_hours, self.decisions)

    def flags(self) -> list[str]:
        """What a manager should look at, in words; empty when nothing stands out."""
        found = []
        rate, card, rubber = self.approval_rate, self.card, self.rubber_share
        stamp = float(settings.RUBBER_STAMP_SECONDS)
        if (
            rate.value is not None
            and card.value is not None
            and (
                (rate.value >= 0.9 and card.value < stamp)
                or (rubber.value is not None and rubber.value >= 0.5)
            )
        ):
            found.append(
                f"{self.analyst} approved {rate} of {self.decisions} proposals with a median of "
                f"{card.value:.0f} s on the card ({rubber} decided in under {stamp:g} s)"
            )
        first, last = self.first_hour, self.last_hour
        if first.value and last.value is not None and last.value < 0.6 * first.value:
            found.append(
                f"{self.analyst}'s time on card falls from {first} in a shift's first hour to "
                f"{last} in its last"
            )
        after = self.after_hours_share
        if after.value is not None and after.value >= 0.5 and self.decisions >= 100:
            found.append(
                f"{self.analyst} carries {after} of their {self.decisions} decisions after hours "
                f"({self.per_hour} while on shift)"
            )
        if self.undone and self.approvals >= MIN_SAMPLE and self.undone / self.approvals >= 0.03:
            found.append(
                f"{self.undone} of {self.analyst}'s {self.approvals} approvals were later "
                "rolled back"
            )
        return found


def _py_fatigue(f: Filters) -> list[FatigueRow]:
    tz = ZoneInfo(_tz())
    stamp = float(settings.RUBBER_STAMP_SECONDS)
    by_analyst: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in _py_decisions(f, by_decision_time=True):
        by_analyst[d["analyst__username"]].append(d)
    out: list[FatigueRow] = []
    for name, decisions in by_analyst.items():
        shifts: list[list[dict[str, Any]]] = []
        longest = run = 0
        previous = None
        for d in decisions:
            if previous is None or d["created_at"] - previous > SHIFT_GAP:
                shifts.append([])
            shifts[-1].append(d)
            previous = d["created_at"]
            run = run + 1 if d["verdict"] == "approve" else 0
            longest = max(longest, run)
        tagged = []
        for shift_no, shift in enumerate(shifts):
            start_hour = shift[0]["created_at"].astimezone(tz).hour
            band = (
                "day" if 5 <= start_hour < 12 else "afternoon" if 12 <= start_hour < 19 else "night"
            )
            started, ended = shift[0]["created_at"], shift[-1]["created_at"]
            long_enough = ended - started >= timedelta(hours=2)
            for d in shift:
                tagged.append(
                    (
                        d,
                        band,
                        shift_no,
                        long_enough and d["created_at"] < started + timedelta(hours=1),
                        long_enough and d["created_at"] > ended - timedelta(hours=1),
                    )
                )
        for band in (None, "day", "afternoon", "night"):
            rows = [t for t in tagged if band is None or t[1] == band]
            if not rows:
                continue
            cards = [t[0]["seconds_on_card"] for t in rows if t[0]["seconds_on_card"] is not None]
            first = [
                t[0]["seconds_on_card"]
                for t in rows
                if t[3] and t[0]["seconds_on_card"] is not None
            ]
            last = [
                t[0]["seconds_on_card"]
                for t in rows
                if t[4] and t[0]["seconds_on_card"] is not None
            ]
            local = [t[0]["created_at"].astimezone(tz) for t in rows]
            out.append(
                FatigueRow(
                    analyst=name,
                    shift=band or "all",
                    decisions=len(rows),
                    approvals=sum(1 for t in rows if t[0]["verdict"] == "approve"),
                    active_hours=len(
                        {
                            t[0]["created_at"].replace(minute=0, second=0, microsecond=0)
                            for t in rows
                        }
                    ),
                    shifts=len({t[2] for t in rows}),
                    carded=len(cards),
                    median_card=percentile(cards, 0.5),
                    rubber=sum(1 for c in cards if c < stamp),
                    first_n=len(first),
                    first_median=percentile(first, 0.5),
                    last_n=len(last),
                    last_median=percentile(last, 0.5),
                    undone=sum(
                        1
                        for t in rows
                        if t[0]["verdict"] == "approve"
                        and t[0]["proposal__execution__status"] in UNDONE
                    ),
                    after_hours=sum(
                        1
                        for at in local
                        if at.isoweekday() >= 6 or not OFFICE_HOURS[0] <= at.hour < OFFICE_HOURS[1]
                    ),
                    longest_streak=longest if band is None else None,
                )
            )
    return out


def fatigue_rows(f: Filters) -> list[FatigueRow]:
    if not _pg():
        return sorted(_py_fatigue(f), key=lambda r: (r.analyst, r.shift != "all", r.shift))
    where, params = _where(f, time_column="d.created_at", analyst_join=True)
    params.update(
        shift_gap=SHIFT_GAP,
        rubber=float(settings.RUBBER_STAMP_SECONDS),
        office_start=OFFICE_HOURS[0],
        office_end=OFFICE_HOURS[1],
    )
    from django.contrib.auth.models import User

    rows = _rows(_FATIGUE_SQL.format(where=where), params)
    names = dict(User.objects.filter(pk__in={r[0] for r in rows}).values_list("pk", "username"))
    out = []
    for analyst_id, band, grouped, *values in rows:
        item = FatigueRow(
            names.get(analyst_id, str(analyst_id)), "all" if grouped else band, *values
        )
        if not grouped:
            item.longest_streak = None  # streaks run across shifts: reported per analyst
        out.append(item)
    return sorted(out, key=lambda r: (r.analyst, r.shift != "all", r.shift))


def fatigue(f: Filters) -> Report:
    rows = fatigue_rows(f)
    overall = [r for r in rows if r.shift == "all"]
    flags = [text for r in overall for text in r.flags()]
    if not overall:
        finding = "Not enough data: no decisions in this period."
    elif flags:
        finding = "; ".join(flags) + "."
    else:
        finding = "No analyst shows signs of approval fatigue in this period."
    headers = [
        "analyst",
        "shift",
        "decisions",
        "shifts",
        "decisions/hour",
        "approval rate",
        "median time on card",
        f"under {float(settings.RUBBER_STAMP_SECONDS):g} s",
        "first hour on card",
        "last hour on card",
        "longest approval streak",
        "approvals rolled back",
        "after hours",
    ]
    table_rows = [
        [
            r.analyst,
            r.shift,
            r.decisions,
            r.shifts,
            r.per_hour,
            r.approval_rate,
            r.card,
            r.rubber_share,
            r.first_hour,
            r.last_hour,
            "" if r.longest_streak is None else r.longest_streak,
            r.undone,
            r.after_hours_share,
        ]
        for r in rows
    ]
    chart = Chart(
        "bars",
        "Median time on card: a shift's first hour against its last",
        [r.analyst for r in overall],
        {
            "first hour": [r.first_hour.value for r in overall],
            "last hour": [r.last_hour.value for r in overall],
            "all decisions": [r.card.value for r in overall],
        },
    )
    return Report(
        "fatigue",
        "Approval fatigue",
        finding,
        bool(flags),
        chart,
        [Table("Fatigue by analyst and shift", headers, table_rows)],
        notes=[
            f"A shift is a run of one analyst's decisions with no gap longer than "
            f"{SHIFT_GAP.total_seconds() / 3600:g} h; its first/last hour is compared only "
            "for shifts of at least 2 h. After hours: outside Monday–Friday "
            f"{OFFICE_HOURS[0]:02d}:00–{OFFICE_HOURS[1]:02d}:00 ({_tz()}).",
        ],
        points=flags,
    )


# --- agent trust and autonomy readiness ------------------------------------------------------


def _levels() -> dict[tuple[str, str], int]:
    levels = {}
    for agent in Agent.objects.prefetch_related("policies__grants"):
        policies = sorted(agent.policies.all(), key=lambda p: -p.version)
        if policies:
            for grant in policies[0].grants.all():
                levels[(agent.slug, grant.action)] = grant.level
    return levels


@dataclass
class TrustRow:
    agent: str
    action: str
    level: int
    proposals: int
    decided: int
    approved: int
    auto: int
    executed: int
    failed: int
    undone: int
    scan: dict[float, tuple[int, int]]  # threshold -> (decided at or above, good outcomes)

    @property
    def approval_rate(self) -> Figure:
        return share(self.approved, self.decided)

    @property
    def failure_rate(self) -> Figure:
        return share(self.failed, self.executed)

    @property
    def rollback_rate(self) -> Figure:
        return share(self.undone, self.executed)

    def recommendation(self) -> str:
        kind = catalogue.get(self.action)
        reversible = bool(kind and kind.reversible)
        judged = self.decided + self.auto
        if judged < MIN_SAMPLE:
            return f"not enough data ({judged} decided or auto-run, {MIN_SAMPLE} needed)"
        rate = self.approval_rate.value
        bad = (self.failed + self.undone) / self.executed if self.executed >= MIN_SAMPLE else None
        if (rate is not None and rate < DEMOTE_APPROVAL_BELOW) or (
            bad is not None and bad > DEMOTE_BAD_OUTCOME_ABOVE
        ):
            why = []
            if rate is not None and rate < DEMOTE_APPROVAL_BELOW:
                why.append(f"analysts approved only {self.approval_rate} of {self.decided}")
            if bad is not None and bad > DEMOTE_BAD_OUTCOME_ABOVE:
                why.append(
                    f"{bad * 100:.0f}% of {self.executed} executions failed or were rolled back"
                )
            if self.level >= 2:
                return f"demote to level {self.level - 1}: " + "; ".join(why)
            return "keep advisory: " + "; ".join(why)
        if self.level == 2 and reversible:
            for x in THRESHOLDS:
                n, good = self.scan.get(x, (0, 0))
                if n >= PROMOTE_MIN and good / n >= PROMOTE_GOOD_SHARE:
                    return (
                        f"promote to level 3 at threshold {x:.2f}: {good} of {n} decided "
                        f"proposals at or above {x:.2f} ({good / n * 100:.0f}%) were approved "
                        "and not rolled back or failed"
                    )
            return (
                f"keep level 2: no confidence threshold gives {PROMOTE_MIN}+ decisions with "
                f"{PROMOTE_GOOD_SHARE * 100:.0f}% good outcomes"
            )
        if self.level == 2:
            return "keep level 2: irreversible actions are not eligible for level 3"
        return f"keep level {self.level}"


def trust_rows(f: Filters) -> tuple[list[TrustRow], dict[str, dict[int, tuple[int, int]]]]:
    levels = _levels()
    scans: dict[tuple[str, str], dict[float, tuple[int, int]]] = defaultdict(dict)
    calibration: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    if _pg():
        where, params = _where(f)
        params["undone"] = list(UNDONE)
        base = _rows(
            "SELECT a.slug, p.action, count(*), "  # noqa: S608
            "count(*) FILTER (WHERE p.status IN ('approved', 'rejected')), "
            "count(*) FILTER (WHERE p.status = 'approved'), "
            "count(*) FILTER (WHERE p.status = 'auto_approved'), "
            "count(e.id) FILTER (WHERE e.status IN ('succeeded', 'failed') "
            "  OR e.status = ANY(%(undone)s)), "
            "count(*) FILTER (WHERE e.status = 'failed'), "
            "count(*) FILTER (WHERE e.status = ANY(%(undone)s)) "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"LEFT JOIN approvals_execution e ON e.proposal_id = p.id AND {E_BOUND} "
            f"WHERE {where} GROUP BY a.slug, p.action",
            params,
        )
        params["thresholds"] = THRESHOLDS
        banded: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
        for slug, action, band, n, good in _rows(
            f"SELECT a.slug, p.action, {BAND_SQL}, count(*), "  # noqa: S608
            "count(*) FILTER (WHERE p.status = 'approved' AND (e.status IS NULL "
            "  OR NOT (e.status = 'failed' OR e.status = ANY(%(undone)s)))) "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"LEFT JOIN approvals_execution e ON e.proposal_id = p.id AND {E_BOUND} "
            f"WHERE {where} AND p.status IN ('approved', 'rejected') GROUP BY 1, 2, 3",
            params,
        ):
            banded[(slug, action)][band] = (n, good)
        # Decided at or above a threshold = the bands from that threshold up.
        for key, bands in banded.items():
            for k, x in enumerate(THRESHOLDS, start=1):
                above = [v for band, v in bands.items() if band >= k]
                if above:
                    scans[key][x] = (sum(n for n, _ in above), sum(g for _, g in above))
        for slug, band, n, approved in _rows(
            "SELECT a.slug, least(width_bucket(p.confidence, 0.5, 1.0, 5), 5) AS band, "  # noqa: S608
            "count(*), count(*) FILTER (WHERE p.status = 'approved') "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"WHERE {where} AND p.status IN ('approved', 'rejected') AND p.confidence >= 0.5 "
            "GROUP BY 1, 2",
            params,
        ):
            calibration[slug][band] = (n, approved)
    else:
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 7)
        for r in _py_proposals(f):
            key = (r["agent__slug"], r["action"])
            c = counts[key]
            decided = r["status"] in ("approved", "rejected")
            ex = r["execution__status"]
            c[0] += 1
            c[1] += decided
            c[2] += r["status"] == "approved"
            c[3] += r["status"] == "auto_approved"
            c[4] += ex in ("succeeded", "failed", *UNDONE)
            c[5] += ex == "failed"
            c[6] += ex in UNDONE
            if decided:
                good = r["status"] == "approved" and ex not in ("failed", *UNDONE)
                for x in THRESHOLDS:
                    if r["confidence"] >= x - 1e-9:
                        n, g = scans[key].get(x, (0, 0))
                        scans[key][x] = (n + 1, g + good)
                if r["confidence"] >= 0.5:
                    band = min(5, int((r["confidence"] - 0.5) / 0.1) + 1)
                    n, a = calibration[r["agent__slug"]].get(band, (0, 0))
                    calibration[r["agent__slug"]][band] = (n + 1, a + (r["status"] == "approved"))
        base = [(slug, action, *c) for (slug, action), c in counts.items()]
    rows = [
        TrustRow(
            slug,
            action,
            levels.get((slug, action), 0),
            proposals,
            decided,
            approved,
            auto,
            executed,
            failed,
            undone,
            scans.get((slug, action), {}),
        )
        for slug, action, proposals, decided, approved, auto, executed, failed, undone in base
    ]
    rows.sort(key=lambda r: (r.agent, r.action))
    return rows, calibration


def trust(f: Filters) -> Report:
    rows, calibration = trust_rows(f)
    promote = [r for r in rows if r.recommendation().startswith("promote")]
    demote = [r for r in rows if r.recommendation().startswith("demote")]
    parts = []
    for r in promote:
        why = r.recommendation().removeprefix("promote to level 3 ")
        parts.append(f"{r.agent} is ready for level 3 on {r.action} {why}")
    for r in demote:
        parts.append(f"{r.agent} should lose autonomy on {r.action} ({r.recommendation()})")
    finding = (
        "; ".join(parts) + "."
        if parts
        else (
            "No agent has earned more autonomy, and none needs less, in this period."
            if rows
            else "Not enough data: no proposals in this period."
        )
    )
    table = Table(
        "Trust by agent and action",
        [
            "agent",
            "action",
            "level",
            "proposals",
            "decided by analysts",
            "approval rate",
            "auto-run",
            "executed",
            "failure rate",
            "rollback rate",
            "recommendation",
        ],
        [
            [
                r.agent,
                r.action,
                r.level,
                r.proposals,
                r.decided,
                r.approval_rate,
                r.auto,
                r.executed,
                r.failure_rate,
                r.rollback_rate,
                r.recommendation(),
            ]
            for r in rows
        ],
    )
    labels = [f"{low:.1f}–{high:.1f}" for low, high in BANDS]
    series = {}
    cal_rows = []
    for slug in sorted(calibration):
        bands = calibration[slug]
        values = []
        for index, label in enumerate(labels, start=1):
            n, approved = bands.get(index, (0, 0))
            rate = share(approved, n)
            values.append(rate.value)
            cal_rows.append([slug, label, n, rate])
        series[slug] = values
    chart = Chart(
        "lines",
        "Calibration: approval rate by the agent's confidence",
        labels,
        series,
        unit="%",
        reference=True,
    )
    return Report(
        "trust",
        "Agent trust and autonomy readiness",
        finding,
        bool(promote or demote),
        chart,
        [
            table,
            Table(
                "Calibration by confidence band",
                ["agent", "confidence", "decided", "approval rate"],
                cal_rows,
            ),
        ],
        notes=[
            f"Promote: {PROMOTE_MIN}+ decided proposals at or above the threshold with at least "
            f"{PROMOTE_GOOD_SHARE * 100:.0f}% approved and not undone; demote: approval rate "
            f"under {DEMOTE_APPROVAL_BELOW * 100:.0f}% or more than "
            f"{DEMOTE_BAD_OUTCOME_ABOVE * 100:.0f}% of executions failed or rolled back. "
            "A well-calibrated agent's line rises with confidence; a flat line means its "
            "confidence says nothing.",
        ],
        points=parts,
    )


# --- threshold what-if -----------------------------------------------------------------------


def _eligible_pairs(scope: str) -> list[str]:
    """agent:action pairs that could run without a human under the replayed threshold."""
    pairs = []
    for (slug, action), level in _levels().items():
        kind = catalogue.get(action)
        reversible = bool(kind and kind.reversible)
        if (
            (scope == "reversible" and level >= 2 and reversible)
            or (level == 3 and reversible)
            or level >= 4
        ):
            pairs.append(f"{slug}:{action}")
    return pairs


@dataclass
class WhatIf:
    label: str
    queued: int
    would_auto: int
    rejected: int
    undone: int
    expired: int
    auto_now: int
    auto_below: int


def whatif_rows(f: Filters, threshold: float) -> list[WhatIf]:
    pairs = _eligible_pairs(f.scope)
    if _pg():
        where, params = _where(f)
        params.update(pairs=pairs, x=threshold, undone=["failed", *UNDONE])
        eligible = (
            "(a.slug || ':' || p.action) = ANY(%(pairs)s) AND p.criticality <> 'critical' "
            "AND p.confidence >= %(x)s - 1e-9"
        )
        queued = "p.status IN ('approved', 'rejected', 'expired')"
        rows = _rows(
            "SELECT a.slug, p.action, GROUPING(a.slug, p.action), "  # noqa: S608
            f"count(*) FILTER (WHERE {queued}), "
            f"count(*) FILTER (WHERE {queued} AND {eligible}), "
            f"count(*) FILTER (WHERE p.status = 'rejected' AND {eligible}), "
            f"count(*) FILTER (WHERE p.status = 'approved' AND {eligible} "
            "  AND e.status = ANY(%(undone)s)), "
            f"count(*) FILTER (WHERE p.status = 'expired' AND {eligible}), "
            "count(*) FILTER (WHERE p.status = 'auto_approved'), "
            "count(*) FILTER (WHERE p.status = 'auto_approved' AND p.confidence < %(x)s - 1e-9) "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"LEFT JOIN approvals_execution e ON e.proposal_id = p.id AND {E_BOUND} "
            f"WHERE {where} GROUP BY GROUPING SETS ((), (a.slug, p.action))",
            params,
        )
        out = [
            WhatIf("all" if grouped else f"{slug} · {action}", *values)
            for slug, action, grouped, *values in rows
        ]
    else:
        totals: dict[str, list[int]] = defaultdict(lambda: [0] * 7)
        allowed = set(pairs)
        for r in _py_proposals(f):
            ok = (
                f"{r['agent__slug']}:{r['action']}" in allowed
                and r["criticality"] != "critical"
                and r["confidence"] >= threshold - 1e-9
            )
            queued = r["status"] in ("approved", "rejected", "expired")
            values = [
                queued,
                queued and ok,
                r["status"] == "rejected" and ok,
                r["status"] == "approved" and ok and r["execution__status"] in ("failed", *UNDONE),
                r["status"] == "expired" and ok,
                r["status"] == "auto_approved",
                r["status"] == "auto_approved" and r["confidence"] < threshold - 1e-9,
            ]
            for label in ("all", f"{r['agent__slug']} · {r['action']}"):
                totals[label] = [t + int(v) for t, v in zip(totals[label], values, strict=True)]
        if not totals:
            totals["all"] = [0] * 7
        out = [WhatIf(label, *values) for label, values in totals.items()]
    out.sort(key=lambda w: (w.label != "all", w.label))
    return out


def whatif_curve(f: Filters) -> list[WhatIf]:
    """The overall what-if at every threshold of THRESHOLDS (one scan on PostgreSQL)."""
    if not _pg():
        return [whatif_rows(f, x)[0] for x in THRESHOLDS]
    where, params = _where(f)
    params.update(pairs=_eligible_pairs(f.scope), thresholds=THRESHOLDS, undone=["failed", *UNDONE])
    eligible = "(a.slug || ':' || p.action) = ANY(%(pairs)s) AND p.criticality <> 'critical'"
    queued = "p.status IN ('approved', 'rejected', 'expired')"
    # One scan grouped by confidence band (band k: at or above THRESHOLDS[k-1], below the next);
    # the count at a threshold is then the sum of the bands above it.
    rows = _rows(
        f"SELECT {BAND_SQL}, "  # noqa: S608
        f"count(*) FILTER (WHERE {queued}), "
        f"count(*) FILTER (WHERE {queued} AND {eligible}), "
        f"count(*) FILTER (WHERE p.status = 'rejected' AND {eligible}), "
        f"count(*) FILTER (WHERE p.status = 'approved' AND {eligible} "
        "  AND e.status = ANY(%(undone)s)), "
        f"count(*) FILTER (WHERE p.status = 'expired' AND {eligible}), "
        "count(*) FILTER (WHERE p.status = 'auto_approved') "
        "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
        f"LEFT JOIN approvals_execution e ON e.proposal_id = p.id AND {E_BOUND} "
        f"WHERE {where} GROUP BY 1",
        params,
    )
    bands = {band: values for band, *values in rows}
    queued_all = sum(v[0] for v in bands.values())
    auto_all = sum(v[5] for v in bands.values())
    curve = []
    for k, x in enumerate(THRESHOLDS, start=1):
        above = [v for band, v in bands.items() if band >= k]
        below_auto = sum(v[5] for band, v in bands.items() if band < k)
        curve.append(
            WhatIf(
                f"{x:.2f}",
                queued_all,
                sum(v[1] for v in above),
                sum(v[2] for v in above),
                sum(v[3] for v in above),
                sum(v[4] for v in above),
                auto_all,
                below_auto,
            )
        )
    return curve


def whatif(f: Filters) -> Report:
    rows = whatif_rows(f, f.threshold)
    total = rows[0]
    scope = (
        "actions granted level 3 or 4 today"
        if f.scope == "granted"
        else "every reversible action, as if granted level 3"
    )
    if total.queued + total.auto_now < MIN_SAMPLE:
        finding = f"Not enough data: {total.queued + total.auto_now} proposals in this period."
    else:
        finding = (
            f"At an auto threshold of {f.threshold:.2f} ({scope}), {total.would_auto} of the "
            f"{total.queued} proposals that waited for an analyst would have run without a "
            f"human; analysts had rejected {total.rejected} of those"
            + (
                f" and {total.undone} more were approved but later failed or were rolled back"
                if total.undone
                else ""
            )
            + (f", and {total.expired} had expired unanswered" if total.expired else "")
            + f". {total.auto_below} of the {total.auto_now} proposals that did run without a "
            "human would have needed one."
        )
    flagged = total.rejected > 0 and total.would_auto > 0
    curve = whatif_curve(f)
    chart = Chart(
        "lines",
        "Would have run without a human, by auto threshold",
        [f"{x:.2f}" for x in THRESHOLDS],
        {
            "would run": [float(w.would_auto) for w in curve],
            "of those rejected": [float(w.rejected) for w in curve],
        },
        unit="",
    )
    table = Table(
        f"What-if at threshold {f.threshold:.2f}",
        [
            "agent · action",
            "sent to analysts",
            "would have run without a human",
            "of those rejected",
            "of those approved but failed or rolled back",
            "of those expired",
            "ran without a human",
            "of those below the threshold",
        ],
        [
            [
                w.label,
                w.queued,
                w.would_auto,
                w.rejected,
                w.undone,
                w.expired,
                w.auto_now,
                w.auto_below,
            ]
            for w in rows
        ],
    )
    curve_table = Table(
        "What-if by threshold",
        ["threshold", "would have run without a human", "of those rejected"],
        [[f"{x:.2f}", w.would_auto, w.rejected] for x, w in zip(THRESHOLDS, curve, strict=True)],
    )
    return Report(
        "whatif",
        "Threshold what-if",
        finding,
        flagged,
        chart,
        [table, curve_table],
        notes=[
            "Replays the period's proposals as routed today, with only the auto threshold "
            "changed: critical targets always need a human, and level 3 only ever covers "
            "reversible actions.",
        ],
    )


REPORTS = {
    "latency": latency,
    "fatigue": fatigue,
    "trust": trust,
    "whatif": whatif,
}
