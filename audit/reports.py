"""The managers' reports: approval latency, approval fatigue, agent trust, threshold what-if.

Reads only, selectors style: each report function takes the filters and returns plain data
(figures, tables, a chart description and a finding in words). Views render it; CSV exports
reuse the same rows.

On PostgreSQL every percentile, rate and streak is computed in the database (percentile_cont,
FILTER, GROUPING SETS, window functions for shifts, approval streaks and the queue's running
depth), and the database returns only one row per group. SQLite, the zero-configuration local
database, has none of those, so there the same figures are computed in Python from the filtered
rows (`_py_*` functions): correct, but only fit for a demo-sized history.

Honest statistics: a figure computed from fewer than its minimum sample says "not enough
data" instead of a number (a p99 from 12 values is just the maximum). Every count names its
population with one name, the same on every tab and in every CSV (`DEFINITIONS`), and every
report states its period and time zone (`REPORT_TIME_ZONE`).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents import catalogue
from agents.models import Agent, Policy

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
# The lower bounds of BANDS. A band is found by comparing the confidence with these bounds
# (width_bucket over an array, bisect in Python): dividing by the band width instead puts
# 0.7 in the band below, as (0.7 - 0.5) / 0.1 is 1.9999999999999996 in floating point.
BAND_BOUNDS = [low for low, _ in BANDS]
UNDONE = ("rolled_back", "rolling_back", "rollback_failed")
DEFAULT_DAYS = 28

NOT_ENOUGH = "not enough data"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- populations: one name each, on every tab and in every CSV --------------------------------

SENT = "sent to analysts"
DECIDED = "decided by analysts"
EXPIRED = "expired unanswered"
WITHDRAWN = "withdrawn by the agent"
PENDING = "still pending"
AUTO = "ran without a human"
DECISIONS = "decisions"
DECISIONS_ON = "decisions on these proposals"
SLA_JUDGED = "judged against the SLA"
SLA_BREACHES = "SLA breaches"
PROPOSALS = "proposals"
ESCALATED = "escalated"
PEAK = "peak queue depth"
SENT_STATUSES = ("pending", "approved", "rejected", "expired", "withdrawn")

DEFINITIONS = {
    PROPOSALS: "every proposal the agent submitted, however the policy routed it "
    "(blocked, advisory, flagged, run at once or sent to analysts).",
    SENT: "proposals the policy routed to a human for approval, whatever became of them: "
    "decided by analysts, expired unanswered, withdrawn by the agent or still pending.",
    DECIDED: "proposals sent to analysts that were approved or rejected; a two-person "
    "approval counts once, at the second approval.",
    EXPIRED: "proposals sent to analysts that nobody decided before they expired.",
    WITHDRAWN: "proposals sent to analysts that the agent withdrew before a decision.",
    PENDING: "proposals sent to analysts that are waiting for a decision now.",
    AUTO: "proposals a level 3 or 4 grant ran at once, with no analyst (auto-approved).",
    DECISIONS: "analysts' approve and reject verdicts, counted by when they were given; a "
    "two-person approval is two decisions, one per analyst.",
    DECISIONS_ON: "analysts' approve and reject verdicts on the proposals submitted in the "
    "period, whenever they were given; a two-person approval is two decisions.",
    SLA_JUDGED: "proposals sent to analysts whose SLA can be judged: decided by analysts, "
    "expired unanswered, or withdrawn or still pending once the SLA had run out. Proposals "
    "still inside their SLA, or withdrawn within it, are left out.",
    SLA_BREACHES: "proposals judged against the SLA that were not decided within it: "
    "decided late, expired unanswered, withdrawn after it ran out, or still pending past it.",
    ESCALATED: "proposals sent to analysts that waited past their policy's escalation time "
    "and were escalated to senior analysts.",
    PEAK: "the most proposals sent to analysts that were pending at the same moment, from "
    "every arrival and every departure (decision, expiry, withdrawal) in the period; 'at' "
    "is when it was first reached.",
}


def defined(*names: str) -> dict[str, str]:
    return {name: DEFINITIONS[name] for name in names}


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
    definitions: dict[str, str] = field(default_factory=dict)  # header -> what it counts

    @property
    def header_cells(self) -> list[tuple[str, str]]:
        return [(h, self.definitions.get(h, "")) for h in self.headers]


@dataclass
class Chart:
    """What to draw; audit.charts turns it into SVG."""

    kind: str  # "bars" (grouped horizontal bars) or "lines"
    title: str
    labels: list[str]
    series: dict[str, list[float | None]]
    unit: str = "s"
    reference: bool = False  # draw the diagonal on a calibration chart


# What a point of a finding means to a manager: the page colours it (and says it in words).
GOOD, NEUTRAL, WARNING, BAD = "good", "neutral", "warning", "bad"


TONE_LABELS = {GOOD: "Good", NEUTRAL: "Note", WARNING: "Warning", BAD: "Needs attention"}


@dataclass(frozen=True)
class Point:
    text: str  # one sentence, ending with a full stop
    tone: str = NEUTRAL

    @property
    def label(self) -> str:
        """The tone in words, beside its colour: colour alone says nothing to some readers."""
        return TONE_LABELS[self.tone]


@dataclass
class Report:
    name: str
    title: str
    points: list[Point]  # the finding, one sentence per point
    chart: Chart
    tables: list[Table]
    counted: str  # what the period selects, e.g. "proposals submitted"
    notes: list[str] = field(default_factory=list)
    extra_charts: list[Chart] = field(default_factory=list)
    # (name, definition) of each population and measure the report counts.
    definitions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def finding(self) -> str:
        return " ".join(point.text for point in self.points)

    @property
    def flagged(self) -> bool:
        return any(point.tone in (WARNING, BAD) for point in self.points)

    def csv_rows(self) -> Iterable[list[str]]:
        for table in self.tables:
            yield ["table", *table.headers]
            for row in table.rows:
                yield [
                    table.title,
                    *(cell.csv if isinstance(cell, Figure) else cell for cell in row),
                ]
        for name, text in self.definitions:
            yield ["definition", name, text]


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

    def __post_init__(self) -> None:
        # Held in UTC: arithmetic on a datetime in a zone with daylight saving is wall-clock
        # arithmetic, and time buckets must be the database's fixed-length intervals.
        object.__setattr__(self, "since", self.since.astimezone(UTC))
        object.__setattr__(self, "until", self.until.astimezone(UTC))

    @classmethod
    def default(cls) -> Filters:
        """The last DEFAULT_DAYS whole days, today included, in the reports' time zone: the
        period the form shows, so that applying the form unchanged gives the same figures."""
        zone = ZoneInfo(_tz())
        today = timezone.now().astimezone(zone).date()
        return cls(
            since=datetime.combine(today - timedelta(days=DEFAULT_DAYS - 1), time(), zone),
            until=datetime.combine(today + timedelta(days=1), time(), zone),
        )


def _pg() -> bool:
    return connection.vendor == "postgresql"


def _tz() -> str:
    return settings.REPORT_TIME_ZONE


def local(at: datetime) -> datetime:
    return at.astimezone(ZoneInfo(_tz()))


def period_text(f: Filters) -> str:
    """The period as the page states it; a period that ends at midnight ends at 24:00 of the
    day before, the last day the form shows."""
    since, until = local(f.since), local(f.until)

    def moment(at: datetime, *, end: bool) -> str:
        if end and at.time() == time():
            return f"{(at - timedelta(days=1)):%Y-%m-%d} 24:00"
        return f"{at:%Y-%m-%d %H:%M}" + (f":{at:%S}" if at.second else "")

    return f"{moment(since, end=False)} to {moment(until, end=True)} ({_tz()})"


def shift_band(hour: int) -> str:
    """The SHIFT_BANDS band a shift starting at this local hour is filed under."""
    for name, first, last in settings.SHIFT_BANDS:
        if (first <= hour < last) if first < last else (hour >= first or hour < last):
            return name
    raise ValueError(hour)  # settings refuse bands that leave an hour out


def _band_sql(hour: str) -> str:
    """shift_band in SQL; the hours are integers checked by the settings."""
    whens = []
    for index, (_name, first, last) in enumerate(settings.SHIFT_BANDS):
        test = (
            f"{hour} >= {first:d} AND {hour} < {last:d}"
            if first < last
            else f"({hour} >= {first:d} OR {hour} < {last:d})"
        )
        whens.append(f"WHEN {test} THEN %(band{index})s")
    return f"CASE {' '.join(whens)} END"


def _band_params() -> dict[str, str]:
    return {f"band{index}": name for index, (name, _, _) in enumerate(settings.SHIFT_BANDS)}


def shift_bands_text() -> str:
    return ", ".join(f"{name} {first:02d}–{last:02d}" for name, first, last in settings.SHIFT_BANDS)


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
# The comparison is exact, as the routing function's `confidence >= auto_threshold` is.
BAND_SQL = "width_bucket(p.confidence, %(thresholds)s::float8[])"
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
            "proposal__action",
            "proposal__agent__slug",
            "proposal__execution__status",
        )
    )


# --- approval latency ------------------------------------------------------------------------

# Grouping keys in the "C" collation: byte comparison sorts several times faster than the
# locale's, and the order of a group key does not matter here.
# Proposals sent to analysts against the SLA, in the order of `Sla`'s fields.
_SLA_COUNTS = """
count(*) FILTER (WHERE p.status = ANY(%(sent)s)),
count(*) FILTER (WHERE p.status IN ('approved', 'rejected')),
count(*) FILTER (WHERE p.status IN ('approved', 'rejected')
    AND p.decided_at - p.created_at > make_interval(mins => %(sla)s)),
count(*) FILTER (WHERE p.status = 'expired'),
count(*) FILTER (WHERE p.status = 'withdrawn'),
count(*) FILTER (WHERE p.status = 'withdrawn'
    AND p.decided_at - p.created_at > make_interval(mins => %(sla)s)),
count(*) FILTER (WHERE p.status = 'pending'),
count(*) FILTER (WHERE p.status = 'pending'
    AND now() - p.created_at > make_interval(mins => %(sla)s)),
count(*) FILTER (WHERE p.escalated_at IS NOT NULL)
"""
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
        params.update(sla=f.sla_minutes, sent=list(SENT_STATUSES))
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
            f"SELECT {_SLA_COUNTS} "  # noqa: S608
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
        counts = _py_sla_counts(rows, timedelta(minutes=f.sla_minutes), timezone.now())
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
    sla = Sla(f.sla_minutes, *counts)
    overall = groups["all"][0] if groups["all"] else ("all", 0, None)
    o50, o90, _o99 = _pcts(overall[1], overall[2])
    tz = _tz()
    points: list[Point] = []
    if overall[1] < MIN_SAMPLE:
        points.append(Point(f"Not enough data: {overall[1]} proposals {DECIDED} in this period."))
    else:
        points.append(
            Point(
                f"Half of the {overall[1]} proposals {DECIDED} were decided within {o50}"
                + (f", 90% within {o90}." if o90.value is not None else ".")
            )
        )
        points.append(sla.point())
        if sla.escalated:
            points.append(
                Point(
                    f"Separately, {sla.escalated} of the {sla.sent} proposals {SENT} waited "
                    "past their policy's escalation time and were escalated."
                )
            )
        slow = [
            (label, pcts[0])
            for label, n, pcts in groups["hour"]
            if n >= MIN_SAMPLE and pcts and pcts[0] is not None
        ]
        if slow:
            worst = max(slow, key=lambda item: item[1])
            points.append(
                Point(f"Slowest hour of day ({tz}): {worst[0]} (median {duration(worst[1])}).")
            )
    if queue.peak:
        points.append(
            Point(
                f"The queue peaked at {queue.peak} proposals pending at once ({queue.peak_label})."
            )
        )

    def table(title: str, key: str, counted: str = DECIDED) -> Table:
        items = sorted(groups[key], key=lambda item: item[0])
        return Table(
            title,
            [title.split(" by ")[-1], counted, "p50", "p90", "p99"],
            [[label, n, *_pcts(n, pcts)] for label, n, pcts in items],
            definitions=defined(counted),
        )

    first = two[1] if two[0] else None
    final = two[2] if two[0] else None
    minutes = f.sla_minutes
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
            ["measure", "count", "at"],
            [
                [SENT, sla.sent, ""],
                [DECIDED, sla.decided, ""],
                [f"decided within {minutes} min", sla.decided - sla.late, ""],
                [f"decided after {minutes} min", sla.late, ""],
                [EXPIRED, sla.expired, ""],
                [WITHDRAWN, sla.withdrawn, ""],
                [f"withdrawn after {minutes} min", sla.withdrawn_late, ""],
                [PENDING, sla.pending, ""],
                [f"still pending after {minutes} min", sla.pending_late, ""],
                [SLA_JUDGED, sla.judged, ""],
                [SLA_BREACHES, sla.breaches, ""],
                [ESCALATED, sla.escalated, ""],
                [PEAK, queue.peak, queue.peak_label],
            ],
        ),
        table("Latency by action", "action"),
        table("Latency by agent", "agent"),
        table("Latency by analyst", "analyst", DECISIONS_ON),
        Table(**{**table(f"Latency by hour of day ({tz})", "hour").__dict__, "folded": True}),
        Table(
            "Queue depth over time",
            [f"interval from ({tz})", "most pending at once", "pending at its end"],
            [list(row) for row in queue.series],
            True,
        ),
    ]
    hours = sorted(groups["hour"], key=lambda item: item[0])
    chart = Chart(
        "bars",
        f"Median and p90 time to decision by hour of day ({tz})",
        [label for label, _, _ in hours],
        {
            "p50": [p.value for p in (_pcts(n, v)[0] for _, n, v in hours)],
            "p90": [p.value for p in (_pcts(n, v)[1] for _, n, v in hours)],
        },
    )
    queue_chart = Chart(
        "lines",
        "Queue depth: most proposals pending at once, by interval",
        [label for label, _, _ in queue.series],
        {"most pending at once": [float(most) for _, most, _ in queue.series]},
        unit="",
    )
    return Report(
        "latency",
        "Approval latency",
        points,
        chart,
        tables,
        counted="proposals submitted",
        notes=[
            "Latency is measured from submission to the final decision; by analyst, to that "
            f"analyst's own decision. SLA: a decision within {minutes} min of submission. "
            f"Hours of day are in {tz}.",
        ],
        extra_charts=[queue_chart],
        definitions=[
            (name, DEFINITIONS[name])
            for name in (
                SENT,
                DECIDED,
                EXPIRED,
                WITHDRAWN,
                PENDING,
                SLA_JUDGED,
                SLA_BREACHES,
                ESCALATED,
                PEAK,
                DECISIONS_ON,
            )
        ],
    )


@dataclass(frozen=True)
class Sla:
    """Proposals sent to analysts, against the SLA (`_SLA_COUNTS` in this order)."""

    minutes: int
    sent: int
    decided: int
    late: int
    expired: int
    withdrawn: int
    withdrawn_late: int
    pending: int
    pending_late: int
    escalated: int

    @property
    def breaches(self) -> int:
        return self.late + self.expired + self.withdrawn_late + self.pending_late

    @property
    def judged(self) -> int:
        return self.decided + self.expired + self.withdrawn_late + self.pending_late

    def point(self) -> Point:
        rate = share(self.breaches, self.judged)
        if not self.breaches:
            return Point(
                f"All {self.judged} proposals {SLA_JUDGED} were decided within the "
                f"{self.minutes}-minute SLA.",
                GOOD,
            )
        parts = [
            f"{count} {words}"
            for count, words in (
                (self.late, "decided late"),
                (self.expired, "expired unanswered"),
                (self.withdrawn_late, "withdrawn after it ran out"),
                (self.pending_late, "still pending past it"),
            )
            if count
        ]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        tone = NEUTRAL if rate.value is None else BAD if rate.value > 0.1 else WARNING
        return Point(
            f"{self.breaches} of the {self.judged} proposals {SLA_JUDGED} ({rate}) were not "
            f"decided within the {self.minutes}-minute SLA: {listed}.",
            tone,
        )


def _py_sla_counts(rows: list[dict[str, Any]], sla: timedelta, now: datetime) -> tuple[int, ...]:
    """`_SLA_COUNTS` over the SQLite path's rows."""

    def waited(r: dict[str, Any]) -> timedelta:
        return (r["decided_at"] or now) - r["created_at"]

    status = [r["status"] for r in rows]
    return (
        sum(s in SENT_STATUSES for s in status),
        sum(s in ("approved", "rejected") for s in status),
        sum(1 for r in rows if r["status"] in ("approved", "rejected") and waited(r) > sla),
        status.count("expired"),
        status.count("withdrawn"),
        sum(1 for r in rows if r["status"] == "withdrawn" and waited(r) > sla),
        status.count("pending"),
        sum(1 for r in rows if r["status"] == "pending" and waited(r) > sla),
        sum(1 for r in rows if r["escalated_at"] is not None),
    )


def _bucket_width(f: Filters) -> timedelta:
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


# Every arrival in the queue (+1, at the start of the period for a proposal already pending)
# and every departure (-1: decision, expiry or withdrawal) in time order; the running sum is
# the depth at each moment, so its maximum is the true peak, not the highest of a few samples.
# At the same instant a departure counts before an arrival. The window orders by the interval
# first (the same order, as intervals follow time) so that grouping needs no second sort, and
# the earliest moment of each interval's peak is the greatest [depth, -microseconds] pair,
# which costs no sort either.
_QUEUE_SQL = """
WITH q AS (
    SELECT p.created_at AS s, p.decided_at AS e
    FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id
    WHERE {where} AND p.status = ANY(%(sent)s)
        AND (p.decided_at IS NULL OR p.decided_at > %(since)s)
), moves AS (
    SELECT date_bin(%(width)s, t, %(since)s) AS bucket, t, delta FROM (
        SELECT greatest(s, %(since)s) AS t, 1 AS delta FROM q
        UNION ALL SELECT e, -1 FROM q WHERE e < %(until)s
    ) m
), running AS (
    SELECT bucket, t, delta,
           sum(delta) OVER (ORDER BY bucket, t, delta ROWS UNBOUNDED PRECEDING) AS depth
    FROM moves
)
SELECT bucket, sum(delta), max(array[depth, -round(date_part('epoch', t) * 1e6)::bigint])
FROM running GROUP BY bucket
"""


def queue_depth(f: Filters) -> QueueDepth:
    """The queue of proposals sent to analysts: its running peak, and per time interval the
    most proposals pending at once and the number pending at the interval's end."""
    width = _bucket_width(f)
    # bucket start -> (net change, highest running depth in it, when first reached)
    buckets: dict[datetime, tuple[int, int, datetime]] = {}
    if _pg():
        where, params = _where(f)
        # A proposal pending at `since` was submitted at most one expiry period earlier.
        where = where.replace("p.created_at >= %(since)s", "p.created_at >= %(lookback)s")
        params.update(width=width, sent=list(SENT_STATUSES))
        for bucket, net, (peak, at) in _rows(_QUEUE_SQL.format(where=where), params):
            buckets[bucket] = (int(net), int(peak), EPOCH + timedelta(microseconds=-at))
    else:
        moves = []
        for r in _py_proposals(f, since=f.since - _longest_life()):
            end = r["decided_at"]
            if r["status"] not in SENT_STATUSES or (end is not None and end <= f.since):
                continue
            moves.append((max(r["created_at"], f.since), 1))
            if end is not None and end < f.until:
                moves.append((end, -1))
        depth = 0
        for at, delta in sorted(moves):
            depth += delta
            bucket = f.since + width * ((at - f.since) // width)
            net, peak, when = buckets.get(bucket, (0, depth, at))
            buckets[bucket] = (net + delta, *((depth, at) if depth > peak else (peak, when)))
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


# --- approval fatigue ------------------------------------------------------------------------

# Shifts and approval streaks are built from all of an analyst's decisions in the period, and
# the action and agent filters only choose which decisions are counted (`counted`): filtering
# must not invent shifts the analyst never worked, nor join two streaks across a rejection of
# something else.
_FATIGUE_SQL = """
WITH base AS (
    SELECT d.analyst_id, d.created_at, d.verdict, d.seconds_on_card AS card,
           d.created_at AT TIME ZONE %(tz)s AS local_at,
           {counted} AS counted,
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
        SELECT analyst_id, run_no, count(*) FILTER (WHERE verdict = 'approve' AND counted) AS run
        FROM marked GROUP BY analyst_id, run_no
    ) r GROUP BY analyst_id
), rows AS (
    SELECT m.*,
           {band} AS band,
           s.ended - s.started >= interval '2 hours'
               AND m.created_at < s.started + interval '1 hour' AS first_hour,
           s.ended - s.started >= interval '2 hours'
               AND m.created_at > s.ended - interval '1 hour' AS last_hour
    FROM marked m JOIN shifts s USING (analyst_id, shift_no)
    WHERE m.counted
)
SELECT r.analyst_id, r.band, GROUPING(r.band),
       count(*), count(*) FILTER (WHERE verdict = 'approve'),
       count(DISTINCT date_trunc('hour', local_at)),
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

PER_ACTIVE_HOUR = "decisions per active hour"
SHIFT = "shift"
SHIFTS = "shifts"
STREAK = "longest approval streak"
AFTER_HOURS = "after hours"


def _fatigue_definitions() -> dict[str, str]:
    gap = f"{SHIFT_GAP.total_seconds() / 3600:g} h"
    return {
        DECISIONS: DEFINITIONS[DECISIONS]
        + " With an action or agent filter, only decisions on those proposals are counted.",
        SHIFT: f"the band of the day in which a shift started ({shift_bands_text()}, "
        f"{_tz()}); 'all' is every shift together.",
        SHIFTS: "runs of one analyst's decisions with no gap longer than "
        f"{gap}, built from all of their decisions in the period whatever the filters; a "
        "shift is counted when it holds a counted decision.",
        PER_ACTIVE_HOUR: "counted decisions divided by the clock hours "
        f"({_tz()}) in which the analyst decided at least one; not hours on shift.",
        STREAK: "the most counted approvals in a row with no rejection of anything in "
        "between; a streak runs across shifts and days within the period.",
        AFTER_HOURS: "share of counted decisions given outside Monday–Friday "
        f"{OFFICE_HOURS[0]:02d}:00–{OFFICE_HOURS[1]:02d}:00 ({_tz()}).",
    }


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

    def flags(self) -> list[Point]:
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
                Point(
                    f"{self.analyst} approved {rate} of {self.decisions} proposals with a "
                    f"median of {card.value:.0f} s on the card ({rubber} decided in under "
                    f"{stamp:g} s).",
                    BAD,
                )
            )
        first, last = self.first_hour, self.last_hour
        if first.value and last.value is not None and last.value < 0.6 * first.value:
            found.append(
                Point(
                    f"{self.analyst}'s time on card falls from {first} in a shift's first hour "
                    f"to {last} in its last.",
                    WARNING,
                )
            )
        after = self.after_hours_share
        if after.value is not None and after.value >= 0.5 and self.decisions >= 100:
            found.append(
                Point(
                    f"{self.analyst} gives {after} of their {self.decisions} decisions after "
                    f"hours ({self.per_hour.text.removesuffix('/h')} per active hour).",
                    WARNING,
                )
            )
        if self.undone and self.approvals >= MIN_SAMPLE and self.undone / self.approvals >= 0.03:
            found.append(
                Point(
                    f"{self.undone} of {self.analyst}'s {self.approvals} approvals were later "
                    "rolled back.",
                    BAD,
                )
            )
        return found


def _counted(f: Filters) -> Any:
    """Whether a decision row of the SQLite path is counted under the action and agent filters."""
    return lambda d: (
        (not f.action or d["proposal__action"] == f.action)
        and (not f.agent or d["proposal__agent__slug"] == f.agent)
    )


def _py_fatigue(f: Filters) -> list[FatigueRow]:
    tz = ZoneInfo(_tz())
    stamp = float(settings.RUBBER_STAMP_SECONDS)
    counted = _counted(f)
    by_analyst: dict[str, list[dict[str, Any]]] = defaultdict(list)
    every = dataclasses.replace(f, action=None, agent=None)
    for d in _py_decisions(every, by_decision_time=True):
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
            run = run + counted(d) if d["verdict"] == "approve" else 0
            longest = max(longest, run)
        tagged = []
        for shift_no, shift in enumerate(shifts):
            band = shift_band(shift[0]["created_at"].astimezone(tz).hour)
            started, ended = shift[0]["created_at"], shift[-1]["created_at"]
            long_enough = ended - started >= timedelta(hours=2)
            for d in shift:
                if not counted(d):
                    continue
                tagged.append(
                    (
                        d,
                        band,
                        shift_no,
                        long_enough and d["created_at"] < started + timedelta(hours=1),
                        long_enough and d["created_at"] > ended - timedelta(hours=1),
                    )
                )
        for band in (None, *(band for band, _, _ in settings.SHIFT_BANDS)):
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
            local_at = [t[0]["created_at"].astimezone(tz) for t in rows]
            out.append(
                FatigueRow(
                    analyst=name,
                    shift=band or "all",
                    decisions=len(rows),
                    approvals=sum(1 for t in rows if t[0]["verdict"] == "approve"),
                    active_hours=len(
                        {at.replace(minute=0, second=0, microsecond=0) for at in local_at}
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
                        for at in local_at
                        if at.isoweekday() >= 6 or not OFFICE_HOURS[0] <= at.hour < OFFICE_HOURS[1]
                    ),
                    longest_streak=longest if band is None else None,
                )
            )
    return out


def fatigue_rows(f: Filters) -> list[FatigueRow]:
    if not _pg():
        return sorted(_py_fatigue(f), key=lambda r: (r.analyst, r.shift != "all", r.shift))
    every = dataclasses.replace(f, action=None, agent=None)
    where, params = _where(every, time_column="d.created_at", analyst_join=True)
    chosen = []
    if f.action:
        chosen.append("p.action = %(action)s")
        params["action"] = f.action
    if f.agent:
        chosen.append("a.slug = %(agent)s")
        params["agent"] = f.agent
    params.update(
        shift_gap=SHIFT_GAP,
        rubber=float(settings.RUBBER_STAMP_SECONDS),
        office_start=OFFICE_HOURS[0],
        office_end=OFFICE_HOURS[1],
        **_band_params(),
    )
    from django.contrib.auth.models import User

    sql = _FATIGUE_SQL.format(
        where=where,
        counted=" AND ".join(chosen) or "true",
        band=_band_sql("s.start_hour"),
    )
    rows = _rows(sql, params)
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
    points = [point for r in overall for point in r.flags()]
    if not overall:
        points = [Point("Not enough data: no decisions in this period.")]
    elif not points:
        points = [Point("No analyst shows signs of approval fatigue in this period.", GOOD)]
    definitions = _fatigue_definitions()
    headers = [
        "analyst",
        SHIFT,
        DECISIONS,
        SHIFTS,
        PER_ACTIVE_HOUR,
        "approval rate",
        "median time on card",
        f"under {float(settings.RUBBER_STAMP_SECONDS):g} s",
        "first hour on card",
        "last hour on card",
        STREAK,
        "approvals rolled back",
        AFTER_HOURS,
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
        points,
        chart,
        [Table("Fatigue by analyst and shift", headers, table_rows, definitions=definitions)],
        counted="decisions given",
        notes=[
            "A shift's first and last hour are compared only for shifts of at least 2 h. "
            "Time on card runs from the card's first display to the decision.",
        ],
        definitions=list(definitions.items()),
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


def _reversible(action: str) -> bool:
    kind = catalogue.get(action)
    return bool(kind and kind.reversible)


def runs_alone(level: int, action: str) -> bool:
    """Whether a grant lets the agent act with no human: the autonomy a demotion takes away.
    Level 3 covers only reversible actions; level 2 never runs anything alone."""
    return level >= 4 or (level == 3 and _reversible(action))


@dataclass(frozen=True)
class Advice:
    kind: str  # "promote", "demote", "not ready", "hold" or "thin" (not enough data)
    text: str


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
    auto_executed: int  # automatic runs whose execution finished
    auto_bad: int  # of those, failed or rolled back
    # threshold -> (decided by analysts on non-critical targets at or above it, good outcomes):
    # the proposals level 3 at that threshold would have run alone.
    scan: dict[float, tuple[int, int]]

    @property
    def approval_rate(self) -> Figure:
        return share(self.approved, self.decided)

    @property
    def failure_rate(self) -> Figure:
        return share(self.failed, self.executed)

    @property
    def rollback_rate(self) -> Figure:
        return share(self.undone, self.executed)

    @property
    def auto_bad_rate(self) -> Figure:
        return share(self.auto_bad, self.auto_executed)

    def recommendation(self) -> str:
        return self.advice().text

    def advice(self) -> Advice:
        """Promote, demote or hold, each judged on the proposals that change would affect."""
        judged = self.decided + self.auto
        if judged < MIN_SAMPLE:
            return Advice(
                "thin", f"not enough data ({judged} {DECIDED} or {AUTO}, {MIN_SAMPLE} needed)"
            )
        if runs_alone(self.level, self.action):
            # Demoting to level 2 sends exactly the automatic runs to an analyst: judge those.
            if self.auto_executed < MIN_SAMPLE:
                return Advice(
                    "hold",
                    f"keep level {self.level}: {self.auto_executed} automatic runs finished, "
                    f"too few to judge ({MIN_SAMPLE} needed)",
                )
            record = (
                f"{self.auto_bad} of {self.auto_executed} automatic runs "
                f"({self.auto_bad_rate}) failed or were rolled back"
            )
            if self.auto_bad / self.auto_executed > DEMOTE_BAD_OUTCOME_ABOVE:
                return Advice("demote", f"demote to level 2: {record}")
            return Advice("hold", f"keep level {self.level}: {record}")
        if self.level == 2 and _reversible(self.action):
            for x in THRESHOLDS:
                n, good = self.scan.get(x, (0, 0))
                if n >= PROMOTE_MIN and good / n >= PROMOTE_GOOD_SHARE:
                    return Advice(
                        "promote",
                        f"promote to level 3 at threshold {x:.2f}: {good} of {n} proposals "
                        f"{DECIDED} at or above {x:.2f} on non-critical targets "
                        f"({good / n * 100:.0f}%) were approved and not rolled back or failed",
                    )
        weak = []
        rate = self.approval_rate.value
        if rate is not None and rate < DEMOTE_APPROVAL_BELOW:
            weak.append(f"analysts approved only {self.approval_rate} of {self.decided}")
        if self.executed >= MIN_SAMPLE and (
            (self.failed + self.undone) / self.executed > DEMOTE_BAD_OUTCOME_ABOVE
        ):
            bad = (self.failed + self.undone) / self.executed
            weak.append(
                f"{bad * 100:.0f}% of {self.executed} executions failed or were rolled back"
            )
        if weak and self.level >= 2:
            return Advice(
                "not ready", f"keep level {self.level}, not ready for more: " + "; ".join(weak)
            )
        if self.level == 2 and _reversible(self.action):
            return Advice(
                "hold",
                f"keep level 2: no confidence threshold gives {PROMOTE_MIN}+ proposals "
                f"{DECIDED} on non-critical targets with {PROMOTE_GOOD_SHARE * 100:.0f}% good "
                "outcomes",
            )
        if self.level in (2, 3):
            return Advice(
                "hold",
                f"keep level {self.level}: an irreversible action always needs an analyst below "
                "level 4",
            )
        return Advice("hold", f"keep level {self.level}")


def trust_rows(f: Filters) -> tuple[list[TrustRow], dict[str, dict[int, tuple[int, int]]]]:
    levels = _levels()
    scans: dict[tuple[str, str], dict[float, tuple[int, int]]] = defaultdict(dict)
    calibration: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    if _pg():
        where, params = _where(f)
        params["undone"] = list(UNDONE)
        finished = "(e.status IN ('succeeded', 'failed') OR e.status = ANY(%(undone)s))"
        bad = "(e.status = 'failed' OR e.status = ANY(%(undone)s))"
        base = _rows(
            "SELECT a.slug, p.action, count(*), "  # noqa: S608
            "count(*) FILTER (WHERE p.status IN ('approved', 'rejected')), "
            "count(*) FILTER (WHERE p.status = 'approved'), "
            "count(*) FILTER (WHERE p.status = 'auto_approved'), "
            f"count(e.id) FILTER (WHERE {finished}), "
            "count(*) FILTER (WHERE e.status = 'failed'), "
            "count(*) FILTER (WHERE e.status = ANY(%(undone)s)), "
            f"count(e.id) FILTER (WHERE p.status = 'auto_approved' AND {finished}), "
            f"count(*) FILTER (WHERE p.status = 'auto_approved' AND {bad}) "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"LEFT JOIN approvals_execution e ON e.proposal_id = p.id AND {E_BOUND} "
            f"WHERE {where} GROUP BY a.slug, p.action",
            params,
        )
        params.update(thresholds=THRESHOLDS, bounds=BAND_BOUNDS)
        banded: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
        for slug, action, band, n, good in _rows(
            f"SELECT a.slug, p.action, {BAND_SQL}, count(*), "  # noqa: S608
            "count(*) FILTER (WHERE p.status = 'approved' AND (e.status IS NULL "
            "  OR NOT (e.status = 'failed' OR e.status = ANY(%(undone)s)))) "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"LEFT JOIN approvals_execution e ON e.proposal_id = p.id AND {E_BOUND} "
            f"WHERE {where} AND p.status IN ('approved', 'rejected') "
            "AND p.criticality <> 'critical' GROUP BY 1, 2, 3",
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
            "SELECT a.slug, width_bucket(p.confidence, %(bounds)s::float8[]) AS band, "  # noqa: S608
            "count(*), count(*) FILTER (WHERE p.status = 'approved') "
            "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
            f"WHERE {where} AND p.status IN ('approved', 'rejected') AND p.confidence >= 0.5 "
            "GROUP BY 1, 2",
            params,
        ):
            calibration[slug][band] = (n, approved)
    else:
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 9)
        finished_statuses = ("succeeded", "failed", *UNDONE)
        for r in _py_proposals(f):
            key = (r["agent__slug"], r["action"])
            c = counts[key]
            decided = r["status"] in ("approved", "rejected")
            auto = r["status"] == "auto_approved"
            ex = r["execution__status"]
            c[0] += 1
            c[1] += decided
            c[2] += r["status"] == "approved"
            c[3] += auto
            c[4] += ex in finished_statuses
            c[5] += ex == "failed"
            c[6] += ex in UNDONE
            c[7] += auto and ex in finished_statuses
            c[8] += auto and ex in ("failed", *UNDONE)
            if decided and r["criticality"] != "critical":
                good = r["status"] == "approved" and ex not in ("failed", *UNDONE)
                for x in THRESHOLDS:
                    if r["confidence"] >= x:
                        n, g = scans[key].get(x, (0, 0))
                        scans[key][x] = (n + 1, g + good)
            if decided and r["confidence"] >= BAND_BOUNDS[0]:
                band = bisect.bisect_right(BAND_BOUNDS, r["confidence"])
                n, a = calibration[r["agent__slug"]].get(band, (0, 0))
                calibration[r["agent__slug"]][band] = (n + 1, a + (r["status"] == "approved"))
        base = [(slug, action, *c) for (slug, action), c in counts.items()]
    rows = [
        TrustRow(
            slug,
            action,
            levels.get((slug, action), 0),
            *values,
            scan=scans.get((slug, action), {}),
        )
        for slug, action, *values in base
    ]
    rows.sort(key=lambda r: (r.agent, r.action))
    return rows, calibration


AUTO_BAD = "automatic runs failed or rolled back"
TRUST_DEFINITIONS = {
    "level": "the grant's autonomy level in the agent's current policy (2: an analyst decides "
    "every proposal; 3: runs reversible actions alone at or above the auto threshold on "
    "non-critical targets; 4: irreversible ones too).",
    PROPOSALS: DEFINITIONS[PROPOSALS],
    DECIDED: DEFINITIONS[DECIDED],
    "approval rate": f"share of the proposals {DECIDED} that were approved.",
    AUTO: DEFINITIONS[AUTO],
    AUTO_BAD: f"share of the finished runs of proposals that {AUTO} which failed or were "
    "rolled back: the record a demotion to level 2 is judged on.",
    "executed": "executions that finished (succeeded, failed or rolled back), whether an "
    "analyst approved them or they ran alone.",
    "failure rate": "share of executed that failed.",
    "rollback rate": "share of executed that were rolled back.",
    "recommendation": "only about autonomy the agent has or could be given, judged on the "
    "proposals the change would affect: a demotion on its automatic runs, a promotion to "
    "level 3 on its proposals decided by analysts on non-critical targets at or above the "
    "threshold (level 3 never runs a critical target alone).",
}


def trust(f: Filters) -> Report:
    rows, calibration = trust_rows(f)
    points = []
    for r in rows:
        advice = r.advice()
        if advice.kind == "promote":
            why = advice.text.removeprefix("promote to level 3 ")
            points.append(Point(f"{r.agent} is ready for level 3 on {r.action} {why}.", GOOD))
    for r in rows:
        advice = r.advice()
        if advice.kind == "demote":
            points.append(
                Point(
                    f"{r.agent} should lose its autonomy on {r.action} (level {r.level}): "
                    f"{advice.text.removeprefix('demote to level 2: ')}; at level 2 an analyst "
                    "would decide each of them.",
                    BAD,
                )
            )
    for r in rows:
        advice = r.advice()
        if advice.kind == "not ready":
            why = advice.text.split(": ", 1)[1]
            points.append(
                Point(
                    f"{r.agent} is not ready for more autonomy on {r.action} (level {r.level}, "
                    f"nothing runs without an analyst): {why}.",
                    WARNING,
                )
            )
    if not points:
        points = [
            Point(
                "No agent has earned more autonomy, and none needs less, in this period."
                if rows
                else "Not enough data: no proposals in this period."
            )
        ]
    table = Table(
        "Trust by agent and action",
        [
            "agent",
            "action",
            "level",
            PROPOSALS,
            DECIDED,
            "approval rate",
            AUTO,
            AUTO_BAD,
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
                r.auto_bad_rate,
                r.executed,
                r.failure_rate,
                r.rollback_rate,
                r.recommendation(),
            ]
            for r in rows
        ],
        definitions=TRUST_DEFINITIONS,
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
    confidence = (
        "the band of the agent's confidence: from its lower bound, included, to its upper "
        "bound, excluded (1.0 falls in 0.9–1.0)."
    )
    return Report(
        "trust",
        "Agent trust and autonomy readiness",
        points,
        chart,
        [
            table,
            Table(
                "Calibration by confidence band",
                ["agent", "confidence", DECIDED, "approval rate"],
                cal_rows,
                definitions={
                    "confidence": confidence,
                    DECIDED: DEFINITIONS[DECIDED],
                    "approval rate": TRUST_DEFINITIONS["approval rate"],
                },
            ),
        ],
        counted="proposals submitted",
        notes=[
            f"Promote: {PROMOTE_MIN}+ proposals {DECIDED} on non-critical targets at or above "
            f"the threshold, at least {PROMOTE_GOOD_SHARE * 100:.0f}% of them approved and not "
            f"undone. Demote: more than {DEMOTE_BAD_OUTCOME_ABOVE * 100:.0f}% of at least "
            f"{MIN_SAMPLE} automatic runs failed or were rolled back. Not ready: approval rate "
            f"under {DEMOTE_APPROVAL_BELOW * 100:.0f}% or more than "
            f"{DEMOTE_BAD_OUTCOME_ABOVE * 100:.0f}% of executions failed or rolled back. "
            "A well-calibrated agent's line rises with confidence; a flat line means its "
            "confidence says nothing.",
        ],
        definitions=[*TRUST_DEFINITIONS.items(), ("confidence", confidence)],
    )


# --- threshold what-if -----------------------------------------------------------------------


def _eligible_pairs(scope: str) -> list[str]:
    """agent:action pairs that could run without a human under the replayed threshold."""
    pairs = []
    for (slug, action), level in _levels().items():
        if (scope == "reversible" and level >= 2 and _reversible(action)) or runs_alone(
            level, action
        ):
            pairs.append(f"{slug}:{action}")
    return pairs


@dataclass
class WhatIf:
    label: str
    sent: int  # sent to analysts
    covered: int  # of those, a pair the replayed grants cover, on a non-critical target
    would_auto: int  # of those, at or above the threshold
    rejected: int
    undone: int
    expired: int
    auto_now: int  # ran without a human
    auto_below: int  # of those, below the threshold


COVERED = "covered by such grants"
WOULD = "would have run without a human"
BELOW = "of those below the threshold"


def _whatif_definitions(scope: str) -> dict[str, str]:
    grants = (
        "level 3 on a reversible action, or level 4"
        if scope == "granted"
        else "any reversible action granted level 2 or more, as if level 3, and level 4"
    )
    return {
        SENT: DEFINITIONS[SENT],
        COVERED: f"proposals {SENT} for an agent and action the replayed grants cover ({grants}) "
        "on a non-critical target, whatever their confidence: the only ones a lower threshold "
        "could let run alone.",
        WOULD: "of those covered, the ones at or above the threshold.",
        AUTO: DEFINITIONS[AUTO],
        BELOW: f"proposals that {AUTO} with a confidence below the threshold: under it, each "
        "would have needed an analyst.",
    }


def whatif_rows(f: Filters, threshold: float) -> list[WhatIf]:
    pairs = _eligible_pairs(f.scope)
    if _pg():
        where, params = _where(f)
        params.update(
            pairs=pairs, x=threshold, undone=["failed", *UNDONE], sent=list(SENT_STATUSES)
        )
        covered = (
            "p.status = ANY(%(sent)s) AND (a.slug || ':' || p.action) = ANY(%(pairs)s) "
            "AND p.criticality <> 'critical'"
        )
        eligible = f"{covered} AND p.confidence >= %(x)s"
        rows = _rows(
            "SELECT a.slug, p.action, GROUPING(a.slug, p.action), "  # noqa: S608
            "count(*) FILTER (WHERE p.status = ANY(%(sent)s)), "
            f"count(*) FILTER (WHERE {covered}), "
            f"count(*) FILTER (WHERE {eligible}), "
            f"count(*) FILTER (WHERE p.status = 'rejected' AND {eligible}), "
            f"count(*) FILTER (WHERE p.status = 'approved' AND {eligible} "
            "  AND e.status = ANY(%(undone)s)), "
            f"count(*) FILTER (WHERE p.status = 'expired' AND {eligible}), "
            "count(*) FILTER (WHERE p.status = 'auto_approved'), "
            "count(*) FILTER (WHERE p.status = 'auto_approved' AND p.confidence < %(x)s) "
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
        totals: dict[str, list[int]] = defaultdict(lambda: [0] * 8)
        allowed = set(pairs)
        for r in _py_proposals(f):
            sent = r["status"] in SENT_STATUSES
            covered = (
                sent
                and f"{r['agent__slug']}:{r['action']}" in allowed
                and r["criticality"] != "critical"
            )
            ok = covered and r["confidence"] >= threshold
            values = [
                sent,
                covered,
                ok,
                r["status"] == "rejected" and ok,
                r["status"] == "approved" and ok and r["execution__status"] in ("failed", *UNDONE),
                r["status"] == "expired" and ok,
                r["status"] == "auto_approved",
                r["status"] == "auto_approved" and r["confidence"] < threshold,
            ]
            for label in ("all", f"{r['agent__slug']} · {r['action']}"):
                totals[label] = [t + int(v) for t, v in zip(totals[label], values, strict=True)]
        if not totals:
            totals["all"] = [0] * 8
        out = [WhatIf(label, *values) for label, values in totals.items()]
    out.sort(key=lambda w: (w.label != "all", w.label))
    return out


def whatif_curve(f: Filters) -> list[WhatIf]:
    """The overall what-if at every threshold of THRESHOLDS (one scan on PostgreSQL)."""
    if not _pg():
        return [dataclasses.replace(whatif_rows(f, x)[0], label=f"{x:.2f}") for x in THRESHOLDS]
    where, params = _where(f)
    params.update(
        pairs=_eligible_pairs(f.scope),
        thresholds=THRESHOLDS,
        undone=["failed", *UNDONE],
        sent=list(SENT_STATUSES),
    )
    covered = (
        "p.status = ANY(%(sent)s) AND (a.slug || ':' || p.action) = ANY(%(pairs)s) "
        "AND p.criticality <> 'critical'"
    )
    # One scan grouped by confidence band (band k: at or above THRESHOLDS[k-1], below the next);
    # the count at a threshold is then the sum of the bands above it.
    rows = _rows(
        f"SELECT {BAND_SQL}, "  # noqa: S608
        "count(*) FILTER (WHERE p.status = ANY(%(sent)s)), "
        f"count(*) FILTER (WHERE {covered}), "
        f"count(*) FILTER (WHERE p.status = 'rejected' AND {covered}), "
        f"count(*) FILTER (WHERE p.status = 'approved' AND {covered} "
        "  AND e.status = ANY(%(undone)s)), "
        f"count(*) FILTER (WHERE p.status = 'expired' AND {covered}), "
        "count(*) FILTER (WHERE p.status = 'auto_approved') "
        "FROM approvals_proposal p JOIN agents_agent a ON a.id = p.agent_id "
        f"LEFT JOIN approvals_execution e ON e.proposal_id = p.id AND {E_BOUND} "
        f"WHERE {where} GROUP BY 1",
        params,
    )
    bands = {band: values for band, *values in rows}
    sent_all = sum(v[0] for v in bands.values())
    covered_all = sum(v[1] for v in bands.values())
    auto_all = sum(v[5] for v in bands.values())
    curve = []
    for k, x in enumerate(THRESHOLDS, start=1):
        above = [v for band, v in bands.items() if band >= k]
        below_auto = sum(v[5] for band, v in bands.items() if band < k)
        curve.append(
            WhatIf(
                f"{x:.2f}",
                sent_all,
                covered_all,
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
    x = f"{f.threshold:.2f}"
    scope = (
        "the level 3 and 4 grants as they are"
        if f.scope == "granted"
        else "every reversible action as if granted level 3"
    )
    if total.sent + total.auto_now < MIN_SAMPLE:
        points = [
            Point(
                f"Not enough data: {total.sent + total.auto_now} proposals {SENT} or that "
                f"{AUTO} in this period."
            )
        ]
    else:
        points = [
            Point(
                f"At an auto threshold of {x}, with {scope}: of the {total.sent} proposals "
                f"{SENT}, {total.covered} were {COVERED} (on a non-critical target), and "
                f"{total.would_auto} of those were at or above {x}: they would have run "
                "without a human."
            )
        ]
        if total.would_auto:
            risky = total.rejected + total.undone
            points.append(
                Point(
                    f"Analysts had rejected {total.rejected} of those {total.would_auto}"
                    + (
                        f", {total.undone} more were approved but later failed or were rolled back"
                        if total.undone
                        else ""
                    )
                    + (f", and {total.expired} had expired unanswered" if total.expired else "")
                    + ".",
                    WARNING if risky else NEUTRAL,
                )
            )
        points.append(
            Point(
                f"{total.auto_below} of the {total.auto_now} proposals that {AUTO} were below "
                f"{x}: each would have needed an analyst."
            )
        )
    curve = whatif_curve(f)
    chart = Chart(
        "lines",
        "What a threshold changes: runs alone, rejected among them, and runs taken back",
        [f"{x:.2f}" for x in THRESHOLDS],
        {
            WOULD: [float(w.would_auto) for w in curve],
            "of those rejected": [float(w.rejected) for w in curve],
            f"{AUTO}, would need one": [float(w.auto_below) for w in curve],
        },
        unit="",
    )
    definitions = _whatif_definitions(f.scope)
    table = Table(
        f"What-if at threshold {x}",
        [
            "agent · action",
            SENT,
            COVERED,
            WOULD,
            "of those rejected",
            "of those approved but failed or rolled back",
            "of those expired",
            AUTO,
            BELOW,
        ],
        [
            [
                w.label,
                w.sent,
                w.covered,
                w.would_auto,
                w.rejected,
                w.undone,
                w.expired,
                w.auto_now,
                w.auto_below,
            ]
            for w in rows
        ],
        definitions=definitions,
    )
    curve_table = Table(
        "What-if by threshold",
        ["threshold", WOULD, "of those rejected", f"{AUTO}: {BELOW}"],
        [
            [f"{x:.2f}", w.would_auto, w.rejected, w.auto_below]
            for x, w in zip(THRESHOLDS, curve, strict=True)
        ],
        definitions={WOULD: definitions[WOULD], f"{AUTO}: {BELOW}": definitions[BELOW]},
    )
    return Report(
        "whatif",
        "Threshold what-if",
        points,
        chart,
        [table, curve_table],
        counted="proposals submitted",
        notes=[
            "Replays the period's proposals as routed today, with only the auto threshold "
            "changed: critical targets always need a human, and level 3 only ever covers "
            "reversible actions. A higher threshold takes runs back from the agent, a lower "
            "one gives it more: read both columns.",
        ],
        definitions=list(definitions.items()),
    )


REPORTS = {
    "latency": latency,
    "fatigue": fatigue,
    "trust": trust,
    "whatif": whatif,
}
