"""Approval fatigue: how each analyst decides over a shift, and who may be rubber-stamping.

Shifts and approval streaks are built from all of an analyst's decisions in the period, and
the action and agent filters only choose which decisions are counted: filtering must not
invent shifts the analyst never worked, nor join two streaks across a rejection of something
else. The walk along each analyst's decisions (gaps, shifts, streaks) is done here over one
ordered read of the period's decisions, on any database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import FilteredRelation

from approvals.models import Decision, Verdict

from ..sql import percentile_cont as percentile
from .base import (
    BAD,
    DECISIONS,
    DEFINITIONS,
    GOOD,
    MIN_SAMPLE,
    OFFICE_HOURS,
    SHIFT_GAP,
    UNDONE,
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
    shift_bands_text,
)
from .query import horizon, longest_life, within

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
        f"{report_zone()}); 'all' is every shift together.",
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


# One decision as read: (analyst, at, verdict, seconds on card, action, agent, execution status).
Row = tuple[str, datetime, str, float | None, str, str, str | None]


@dataclass(frozen=True)
class Placed:
    """A counted decision, placed in its analyst's shift."""

    local_at: datetime
    approve: bool
    card: float | None
    band: str  # SHIFT_BANDS band of the shift's start
    shift: int  # the shift's number among the analyst's shifts
    first_hour: bool  # in the first hour of a shift of at least 2 h
    last_hour: bool  # in the last hour of such a shift
    undone: bool  # its execution was rolled back


def _by_analyst(f: Filters) -> Iterator[tuple[str, Iterator[Row]]]:
    """Every decision given in the period, whatever the action and agent filters, by analyst
    in time order."""
    lookback = f.since - longest_life()
    decisions = Decision.objects.filter(
        within("created_at", f.since, f.until),
        within("proposal__created_at", lookback, f.until),
    )
    if f.analyst:
        decisions = decisions.filter(analyst__username=f.analyst)
    rows = (
        decisions.alias(
            run=FilteredRelation(
                "proposal__execution",
                condition=within("proposal__execution__created_at", lookback, horizon(f)),
            )
        )
        .order_by("analyst_id", "created_at")
        .values_list(
            "analyst__username",
            "created_at",
            "verdict",
            "seconds_on_card",
            "proposal__action",
            "proposal__agent__slug",
            "run__status",
        )
    )
    return groupby(rows.iterator(chunk_size=5000), key=lambda row: row[0])


def _shifts(decisions: Iterator[Row]) -> list[list[Row]]:
    """An analyst's decisions cut into shifts at every gap longer than SHIFT_GAP."""
    shifts: list[list[Row]] = []
    previous = None
    for d in decisions:
        if previous is None or d[1] - previous > SHIFT_GAP:
            shifts.append([])
        shifts[-1].append(d)
        previous = d[1]
    return shifts


def _place(f: Filters, decisions: Iterator[Row]) -> tuple[list[Placed], int]:
    """The analyst's counted decisions placed in their shifts, and their longest approval
    streak (counted approvals with no rejection of anything in between)."""
    zone = ZoneInfo(report_zone())
    placed: list[Placed] = []
    longest = run = 0
    hour, two_hours = timedelta(hours=1), timedelta(hours=2)
    for number, shift in enumerate(_shifts(decisions)):
        started, ended = shift[0][1], shift[-1][1]
        band = shift_band(started.astimezone(zone).hour)
        long_enough = ended - started >= two_hours
        for _, at, verdict, card, action, agent, execution in shift:
            counted = (not f.action or action == f.action) and (not f.agent or agent == f.agent)
            approve = verdict == Verdict.APPROVE
            run = run + counted if approve else 0
            longest = max(longest, run)
            if counted:
                placed.append(
                    Placed(
                        local_at=at.astimezone(zone),
                        approve=approve,
                        card=card,
                        band=band,
                        shift=number,
                        first_hour=long_enough and at < started + hour,
                        last_hour=long_enough and at > ended - hour,
                        undone=approve and execution in UNDONE,
                    )
                )
    return placed, longest


def _after_hours(at: datetime) -> bool:
    return at.isoweekday() >= 6 or not OFFICE_HOURS[0] <= at.hour < OFFICE_HOURS[1]


def _row(analyst: str, shift: str, placed: list[Placed], longest: int | None) -> FatigueRow:
    cards = [p.card for p in placed if p.card is not None]
    first = [p.card for p in placed if p.first_hour and p.card is not None]
    last = [p.card for p in placed if p.last_hour and p.card is not None]
    stamp = float(settings.RUBBER_STAMP_SECONDS)
    return FatigueRow(
        analyst=analyst,
        shift=shift,
        decisions=len(placed),
        approvals=sum(p.approve for p in placed),
        active_hours=len({p.local_at.replace(minute=0, second=0, microsecond=0) for p in placed}),
        shifts=len({p.shift for p in placed}),
        carded=len(cards),
        median_card=percentile(cards, 0.5),
        rubber=sum(1 for card in cards if card < stamp),
        first_n=len(first),
        first_median=percentile(first, 0.5),
        last_n=len(last),
        last_median=percentile(last, 0.5),
        undone=sum(p.undone for p in placed),
        after_hours=sum(_after_hours(p.local_at) for p in placed),
        longest_streak=longest,
    )


def fatigue_rows(f: Filters) -> list[FatigueRow]:
    """Per analyst, all shifts together ('all'; with the longest streak, which runs across
    shifts) and then each band of the day their shifts started in."""
    out: list[FatigueRow] = []
    for analyst, decisions in _by_analyst(f):
        placed, longest = _place(f, decisions)
        if not placed:
            continue
        out.append(_row(analyst, "all", placed, longest))
        for band, _first, _last in settings.SHIFT_BANDS:
            in_band = [p for p in placed if p.band == band]
            if in_band:
                out.append(_row(analyst, band, in_band, None))
    return sorted(out, key=lambda r: (r.analyst, r.shift != "all", r.shift))


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
    return Report(
        "fatigue",
        "Approval fatigue",
        points,
        chart,
        [table],
        counted="decisions given",
        notes=[
            "A shift's first and last hour are compared only for shifts of at least 2 h. "
            "Time on card runs from the card's first display to the decision.",
        ],
        definitions=list(definitions.items()),
    )
