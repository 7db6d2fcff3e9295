"""Approval fatigue: how each analyst decides over a shift, and who may be rubber-stamping.

Shifts and approval streaks are built from all of an analyst's decisions in the period, and
the action and agent filters only choose which decisions are counted: filtering must not
invent shifts the analyst never worked, nor join two streaks across a rejection of something
else. The walk along each analyst's decisions (gaps, shifts, streaks) is one statement,
`audit.sql.FATIGUE`, over the decisions this module selects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import (
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import ExtractHour, ExtractIsoWeekDay, TruncHour

from approvals.models import Decision, Verdict

from .. import sql
from ..sql import Seconds, as_list, band_case, fetch, rows_sql
from . import checks, periods
from .base import (
    BAD,
    DECISIONS,
    DEFINITIONS,
    GOOD,
    MIN_SAMPLE,
    OFFICE_HOURS,
    SHIFT,
    SHIFT_GAP,
    WARNING,
    Chart,
    Figure,
    Filters,
    Point,
    Report,
    Table,
    figure,
    report_zone,
    share,
    shift_band,
    shift_definition,
    shift_gap_text,
)
from .histogram import percentiles
from .query import decisions_given, flag
from .shifts import Agg

PER_ACTIVE_HOUR = "decisions per active hour"
SHIFTS = "shifts"
STREAK = "longest approval streak"
AFTER_HOURS = "after hours"


def _fatigue_definitions() -> dict[str, str]:
    gap = shift_gap_text()
    return {
        DECISIONS: DEFINITIONS[DECISIONS]
        + " With an action or agent filter, only decisions on those proposals are counted.",
        SHIFT: shift_definition(),
        SHIFTS: "runs of one analyst's decisions with no gap longer than "
        f"{gap}, built from all of their decisions in the period whatever the filters; a "
        "shift is counted when it holds a counted decision.",
        PER_ACTIVE_HOUR: "counted decisions divided by the clock hours "
        f"({report_zone()}) in which the analyst decided at least one; not hours on shift.",
        STREAK: "the most counted approvals in a row with no rejection of anything in "
        "between; a streak runs across shifts and days within the period.",
        AFTER_HOURS: "share of counted decisions given outside Monday–Friday "
        f"{OFFICE_HOURS[0]:02d}:00–{OFFICE_HOURS[1]:02d}:00 ({report_zone()}).",
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


def _decisions(f: Filters) -> QuerySet[Decision]:
    """Every decision given in the period, whatever the action and agent filters, as the rows
    `audit.sql.FATIGUE` reads."""
    zone = ZoneInfo(report_zone())
    start = Value(f.since, output_field=DateTimeField())
    chosen = Q()
    if f.action:
        chosen &= Q(proposal__action=f.action)
    if f.agent:
        chosen &= Q(proposal__agent__slug=f.agent)
    return (
        decisions_given(f.since, f.until, analyst=f.analyst or "")
        .annotate(
            a=F("analyst_id"),
            t=Seconds(ExpressionWrapper(F("created_at") - start, output_field=DurationField())),
            approve=flag(Q(verdict=Verdict.APPROVE)),
            counted=flag(chosen),
            card=F("seconds_on_card"),
            hour=ExtractHour("created_at", tzinfo=zone),
            dow=ExtractIsoWeekDay("created_at", tzinfo=zone),
            hour_key=TruncHour("created_at", tzinfo=zone),
        )
        .values("a", "t", "approve", "counted", "undone", "card", "hour", "dow", "hour_key")
    )


def fatigue_rows(f: Filters) -> list[FatigueRow]:
    """Per analyst, all shifts together ('all'; with the longest streak, which runs across
    shifts) and then each band of the day their shifts started in: from the daily rollups
    when the period has a built day, else from the one exact statement."""
    if periods.usable(f, threshold=False):
        return _rolled_rows(f)
    rows, params = rows_sql(_decisions(f))
    band, names = band_case("s.start_hour", settings.SHIFT_BANDS)
    statement = sql.fatigue(
        rows,
        gap=SHIFT_GAP.total_seconds(),
        rubber=float(settings.RUBBER_STAMP_SECONDS),
        office=OFFICE_HOURS,
        band=band,
    )
    found = fetch(statement, [*params, *names])
    users = dict(
        User.objects.filter(pk__in={row[0] for row in found}).values_list("pk", "username")
    )
    out = []
    for analyst, shift, n, approvals, hours, shifts, carded, median, rubber, *rest in found:
        first_n, first, last_n, last, undone, after, longest = rest
        out.append(
            FatigueRow(
                users.get(analyst, str(analyst)),
                shift or "all",
                *(int(v) for v in (n, approvals, hours, shifts, carded)),
                _median(median),
                int(rubber),
                int(first_n),
                _median(first),
                int(last_n),
                _median(last),
                int(undone),
                int(after),
                None if longest is None else int(longest),
            )
        )
    return sorted(out, key=lambda r: (r.analyst, r.shift != "all", r.shift))


def _rolled_rows(f: Filters) -> list[FatigueRow]:
    out = []
    for analyst, summary in periods.shift_summaries(f).items():
        overall, bands = Agg(), defaultdict(Agg)
        for hour, agg in summary.totals().items():
            overall.add(agg)
            bands[shift_band(hour)].add(agg)
        if not overall.n:
            continue
        out.append(_row(analyst, "all", overall, summary.longest))
        out += [_row(analyst, band, agg, None) for band, agg in bands.items() if agg.n]
    return sorted(out, key=lambda r: (r.analyst, r.shift != "all", r.shift))


def _row(analyst: str, shift: str, agg: Agg, longest: int | None) -> FatigueRow:
    def median(histogram: dict[int, int]) -> float | None:
        found = percentiles(histogram, (0.5,))
        return found[0] if found else None

    return FatigueRow(
        analyst,
        shift,
        agg.n,
        agg.approvals,
        agg.hours,
        agg.shifts,
        sum(agg.card.values()),
        median(agg.card),
        agg.rubber,
        sum(agg.first.values()),
        median(agg.first),
        sum(agg.last.values()),
        median(agg.last),
        agg.undone,
        agg.after,
        longest,
    )


def _median(value: object) -> float | None:
    listed = as_list(value)
    return listed[0] if listed else None


def _headers() -> list[str]:
    return [
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


def _cells(r: FatigueRow) -> list[object]:
    return [
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


def fatigue(f: Filters) -> Report:
    rows = fatigue_rows(f)
    overall = [r for r in rows if r.shift == "all"]
    points = [point for r in overall for point in r.flags()]
    if not overall:
        points = [Point("Not enough data: no decisions in this period.")]
    elif not points:
        points = [Point("No analyst shows signs of approval fatigue in this period.", GOOD)]
    definitions = _fatigue_definitions()
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
    table = Table(
        "Fatigue by analyst and shift",
        _headers(),
        [_cells(r) for r in rows],
        definitions=definitions,
    )
    caught = checks.attention(f)
    found = caught.points()
    if any(point.tone in (WARNING, BAD) for point in found):
        points = [point for point in points if point.tone != GOOD]  # no "no signs" beside them
    points += found
    definitions |= checks.definitions()
    return Report(
        "fatigue",
        "Approval fatigue",
        points,
        chart,
        [table, *caught.tables()],
        counted="decisions given",
        notes=[
            "A shift's first and last hour are compared only for shifts of at least 2 h. "
            "Time on card runs from the card's first display to the decision.",
            "Decisions on attention checks are left out of every other figure here; they are "
            "counted only as checks caught or missed.",
        ],
        extra_charts=caught.charts(),
        definitions=list(definitions.items()),
    )
