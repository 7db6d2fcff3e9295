"""What every report shares: sample sizes, population names, periods, filters and formatting.

Each report (latency, fatigue, trust, what-if) takes `Filters` and returns a `Report` of plain
data: a finding in sentences, tables, charts and the definition of every population it counts.
Every count names its population with one name, the same on every tab and in every CSV
(`DEFINITIONS`), and every report states its period and time zone (`REPORT_TIME_ZONE`).

Honest statistics: a figure computed from fewer than its minimum sample says "not enough
data" instead of a number (a p99 from 12 values is just the maximum).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from approvals.models import ExecutionStatus, ProposalStatus

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
UNDONE = (
    ExecutionStatus.ROLLED_BACK,
    ExecutionStatus.ROLLING_BACK,
    ExecutionStatus.ROLLBACK_FAILED,
)
# Executions that failed or were taken back: the bad outcomes trust and what-if count.
BAD_OUTCOMES = (ExecutionStatus.FAILED, *UNDONE)
# Executions that finished, well or badly.
FINISHED = (ExecutionStatus.SUCCEEDED, *BAD_OUTCOMES)
DEFAULT_DAYS = 28

NOT_ENOUGH = "not enough data"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- populations: one name each, on every tab and in every CSV --------------------------------

SENT = "sent to analysts"
DECIDED = "decided by analysts"
EXPIRED = "expired unanswered"
WITHDRAWN = "withdrawn before a decision"
PENDING = "still pending"
AUTO = "ran without a human"
DECISIONS = "decisions"
DECISIONS_ON = "decisions on these proposals"
SLA_JUDGED = "judged against the SLA"
SLA_BREACHES = "SLA breaches"
PROPOSALS = "proposals"
ESCALATED = "escalated"
PEAK = "peak queue depth"
SHIFT = "shift"
SENT_STATUSES = (
    ProposalStatus.PENDING,
    ProposalStatus.APPROVED,
    ProposalStatus.REJECTED,
    ProposalStatus.EXPIRED,
    ProposalStatus.WITHDRAWN,
)
DECIDED_STATUSES = (ProposalStatus.APPROVED, ProposalStatus.REJECTED)

DEFINITIONS = {
    PROPOSALS: "every proposal the agent submitted, however the policy routed it "
    "(blocked, advisory, flagged, run at once or sent to analysts).",
    SENT: "proposals the policy routed to a human for approval, whatever became of them: "
    "decided by analysts, expired unanswered, withdrawn before a decision or still pending.",
    DECIDED: "proposals sent to analysts that were approved or rejected; a two-person "
    "approval counts once, at the second approval.",
    EXPIRED: "proposals sent to analysts that nobody decided before they expired.",
    WITHDRAWN: "proposals sent to analysts that were withdrawn before anyone decided them: by "
    "the agent itself, or on its behalf by a senior analyst, a manager or an admin clearing "
    "its pending proposals with a reason (the audit log's proposal.withdrawn event names "
    "which: the agent or the person).",
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


# The populations a sentence names are marked where they stand, with their definition: every
# multi-word name. One-word names ("proposals", "decisions", "escalated") are also everyday
# words, and a sentence that uses them as words must not be read as counting the population.
_MARKED = sorted((name for name in DEFINITIONS if " " in name), key=len, reverse=True)
_MARKED_RE = re.compile(r"\b(" + "|".join(re.escape(name) for name in _MARKED) + r")\b")


def marked(text: str) -> list[tuple[str, str]]:
    """`text` in pieces, (piece, definition) where a piece names a population, (piece, "")
    elsewhere: the page shows each population's definition where the sentence counts it."""
    pieces: list[tuple[str, str]] = []
    at = 0
    for match in _MARKED_RE.finditer(text):
        if match.start() > at:
            pieces.append((text[at : match.start()], ""))
        pieces.append((match.group(0), DEFINITIONS[match.group(0)]))
        at = match.end()
    if at < len(text):
        pieces.append((text[at:], ""))
    return pieces


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

    @property
    def cells(self) -> list[list[tuple[Any, str]]]:
        """Rows as (cell, definition): a row labelled by a population carries its definition,
        so the page defines it where it is counted, as it does in the headers."""
        return [
            [
                (cell, self.definitions.get(cell) or DEFINITIONS.get(cell, ""))
                if column == 0 and isinstance(cell, str)
                else (cell, "")
                for column, cell in enumerate(row)
            ]
            for row in self.rows
        ]


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

    @property
    def parts(self) -> list[tuple[str, str]]:
        """The sentence with the populations it counts marked (see `marked`)."""
        return marked(self.text)


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
        zone = ZoneInfo(report_zone())
        today = timezone.now().astimezone(zone).date()
        return cls(
            since=datetime.combine(today - timedelta(days=DEFAULT_DAYS - 1), time(), zone),
            until=datetime.combine(today + timedelta(days=1), time(), zone),
        )


def report_zone() -> str:
    return settings.REPORT_TIME_ZONE


def local(at: datetime) -> datetime:
    return at.astimezone(ZoneInfo(report_zone()))


def period_text(f: Filters) -> str:
    """The period as the page states it; a period that ends at midnight ends at 24:00 of the
    day before, the last day the form shows."""
    since, until = local(f.since), local(f.until)

    def moment(at: datetime, *, end: bool) -> str:
        if end and at.time() == time():
            return f"{(at - timedelta(days=1)):%Y-%m-%d} 24:00"
        return f"{at:%Y-%m-%d %H:%M}" + (f":{at:%S}" if at.second else "")

    return f"{moment(since, end=False)} to {moment(until, end=True)} ({report_zone()})"


def shift_band(hour: int) -> str:
    """The SHIFT_BANDS band a shift starting at this local hour is filed under."""
    for name, first, last in settings.SHIFT_BANDS:
        if (first <= hour < last) if first < last else (hour >= first or hour < last):
            return name
    raise ValueError(hour)  # settings refuse bands that leave an hour out


def shift_bands_text() -> str:
    return ", ".join(f"{name} {first:02d}–{last:02d}" for name, first, last in settings.SHIFT_BANDS)


def shift_gap_text() -> str:
    return f"{SHIFT_GAP.total_seconds() / 3600:g} h"


def shift_definition() -> str:
    """What a SHIFT column names, on the fatigue table and the checks' alike (read when the
    report is built: the bands and the time zone are settings)."""
    return (
        f"the band of the day in which a shift started ({shift_bands_text()}, "
        f"{report_zone()}); 'all' is every shift together."
    )


def percentile_figures(n: int, values: Sequence[float | None] | None) -> list[Figure]:
    p50, p90, p99 = values if values else (None, None, None)
    return [
        figure(p50, n),
        figure(p90, n, minimum=MIN_SAMPLE_P90),
        figure(p99, n, minimum=MIN_SAMPLE_P99),
    ]
