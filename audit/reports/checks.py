"""Attention checks on the fatigue report: how many each analyst caught, and by hour of shift.

A check is decided when an analyst rejected it (caught) or approved it (missed); one that
expired unanswered is neither. Its hour of shift counts from the start of the analyst's shift
it was decided in: shifts are runs of the analyst's activity (their decisions and the checks
they decided) with no gap longer than SHIFT_GAP, as the fatigue table builds them, so the
first hour of a shift is hour 1. Hours from LAST_HOUR on are counted together. Per analyst,
checks are also counted under the SHIFT_BANDS band their shift started in (REPORT_TIME_ZONE),
as the fatigue table files shifts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import Q

from approvals.models import AttentionCheck, CheckOutcome, Decision

from .base import (
    BAD,
    GOOD,
    SHIFT,
    SHIFT_GAP,
    WARNING,
    Chart,
    Figure,
    Filters,
    Point,
    Table,
    local,
    share,
    shift_band,
    shift_definition,
    shift_gap_text,
)
from .query import within

# A catch rate from fewer checks than this says "not enough data".
MIN_CHECKS = 10
# Attention drops when the catch rate from some hour of shift on is this much lower than
# before it, with at least MIN_CHECKS checks on each side.
DROP = 0.20
# An analyst who catches less than this share of at least MIN_CHECKS checks is named.
LOW_CATCH = 0.70
LAST_HOUR = 8

CHECKS = "attention checks decided"
CAUGHT = "caught"
MISSED = "missed"
CATCH_RATE = "catch rate"
HOUR_OF_SHIFT = "hour of shift"


def definitions() -> dict[str, str]:
    """What each figure of the checks' tables counts (read when the report is built: the shift
    bands and the time zone are settings)."""
    return {
        CHECKS: "synthetic proposals the console put in the queue to test attention (each has "
        "one flaw a careful analyst sees), decided in the period: rejected (caught) or "
        "approved (missed; nothing ran). Checks that expired unanswered are left out.",
        CAUGHT: "attention checks decided that the analyst rejected.",
        MISSED: "attention checks decided that the analyst approved; each was stopped and "
        "nothing ran.",
        CATCH_RATE: "caught divided by attention checks decided.",
        SHIFT: shift_definition(),
        HOUR_OF_SHIFT: "the hour of the analyst's shift in which the check was decided: hour 1 "
        f"starts with the shift's first decision; a shift ends after a gap longer than "
        f"{shift_gap_text()}; hours {LAST_HOUR} and later are counted "
        "together.",
    }


@dataclass
class Tally:
    decided: int = 0
    caught: int = 0

    def add(self, caught: bool) -> None:
        self.decided += 1
        self.caught += caught

    @property
    def rate(self) -> Figure:
        return share(self.caught, self.decided, minimum=MIN_CHECKS)


@dataclass
class Attention:
    """The period's decided checks, per analyst and per hour of shift."""

    by_analyst: dict[str, Tally] = field(default_factory=dict)
    by_hour: dict[int, Tally] = field(default_factory=dict)
    # (analyst, band of the day the shift started in) -> checks
    by_band: dict[tuple[str, str], Tally] = field(default_factory=dict)

    @property
    def decided(self) -> int:
        return sum(t.decided for t in self.by_analyst.values())

    def drop(self) -> tuple[int, Tally, Tally] | None:
        """The hour of shift from which the catch rate falls most, if it falls by DROP or
        more: (that hour, the checks before it, the checks from it on)."""
        best = None
        hours = sorted(self.by_hour)
        for split in hours[1:]:
            before, after = Tally(), Tally()
            for hour, tally in self.by_hour.items():
                side = before if hour < split else after
                side.decided += tally.decided
                side.caught += tally.caught
            if before.decided < MIN_CHECKS or after.decided < MIN_CHECKS:
                continue
            fall = before.caught / before.decided - after.caught / after.decided
            if fall >= DROP and (best is None or fall > best[0]):
                best = (fall, split, before, after)
        return None if best is None else best[1:]

    def points(self) -> list[Point]:
        if not self.decided:
            return []
        found = []
        drop = self.drop()
        if drop is not None:
            hour, before, after = drop
            found.append(
                Point(
                    f"Attention drops from hour {hour} of a shift: analysts caught "
                    f"{before.rate} of {before.decided} attention checks before it and "
                    f"{after.rate} of {after.decided} from then on.",
                    WARNING,
                )
            )
        for analyst, tally in sorted(self.by_analyst.items()):
            rate = tally.rate
            if rate.value is not None and rate.value < LOW_CATCH:
                found.append(
                    Point(
                        f"{analyst} caught {tally.caught} of {tally.decided} attention checks "
                        f"({rate}); the others were approved.",
                        BAD,
                    )
                )
        if not found:
            total = Tally(self.decided, sum(t.caught for t in self.by_analyst.values()))
            found.append(
                Point(
                    f"Analysts caught {total.caught} of {total.decided} attention checks "
                    f"({total.rate}), with no drop later in their shifts.",
                    GOOD,
                )
            )
        return found

    def tables(self) -> list[Table]:
        if not self.decided:
            return []
        headers = ["analyst", SHIFT, CHECKS, CAUGHT, MISSED, CATCH_RATE]
        rows = []
        for name, t in sorted(self.by_analyst.items()):
            rows.append([name, "all", t.decided, t.caught, t.decided - t.caught, t.rate])
            for (who, band), b in sorted(self.by_band.items()):
                if who == name:
                    rows.append([name, band, b.decided, b.caught, b.decided - b.caught, b.rate])
        hours = [HOUR_OF_SHIFT, CHECKS, CAUGHT, MISSED, CATCH_RATE]
        hour_rows = [
            [_hour_label(hour), t.decided, t.caught, t.decided - t.caught, t.rate]
            for hour, t in sorted(self.by_hour.items())
        ]
        return [
            Table("Attention checks by analyst", headers, rows, definitions=definitions()),
            Table("Attention checks by hour of shift", hours, hour_rows, definitions=definitions()),
        ]

    def charts(self) -> list[Chart]:
        if not self.decided:
            return []
        ordered = sorted(self.by_hour.items())
        return [
            Chart(
                "bars",
                "Attention checks caught, by hour of shift",
                [_hour_label(hour) for hour, _ in ordered],
                {CATCH_RATE: [t.rate.value for _, t in ordered]},
                unit="%",
            )
        ]


def _hour_label(hour: int) -> str:
    return f"hour {hour}" if hour < LAST_HOUR else f"hour {LAST_HOUR}+"


def attention(f: Filters) -> Attention:
    """Every check decided in the period (the analyst, agent and action filters apply: the agent
    a check names), with its analyst's hour of shift."""
    chosen = Q(
        outcome__in=(CheckOutcome.CAUGHT, CheckOutcome.MISSED), analyst__isnull=False
    ) & within("decided_at", f.since, f.until)
    if f.analyst:
        chosen &= Q(analyst__username=f.analyst)
    if f.action:
        chosen &= Q(proposal__action=f.action)
    if f.agent:
        chosen &= Q(shown_agent=f.agent)
    decided = list(
        AttentionCheck.objects.filter(chosen)
        .order_by("decided_at")
        .values_list("analyst_id", "decided_at", "outcome")
    )
    result = Attention()
    if not decided:
        return result
    analysts = {a for a, _, _ in decided}
    names = dict(User.objects.filter(pk__in=analysts).values_list("pk", "username"))
    starts = _shift_starts(analysts, f)
    for analyst, at, outcome in decided:
        caught = outcome == CheckOutcome.CAUGHT
        name = names.get(analyst, str(analyst))
        result.by_analyst.setdefault(name, Tally()).add(caught)
        start = _start_of(starts.get(analyst, []), at)
        hour = min(int((at - start).total_seconds() // 3600) + 1, LAST_HOUR)
        result.by_hour.setdefault(hour, Tally()).add(caught)
        band = shift_band(local(start).hour)
        result.by_band.setdefault((name, band), Tally()).add(caught)
    return result


def _shift_starts(analysts: set[int], f: Filters) -> dict[int, list[datetime]]:
    """Per analyst, the start of each shift in the period: their activity (decisions, and
    checks they approved, which leave no decision) walked in time order."""
    activity: dict[int, list[datetime]] = defaultdict(list)
    period = within("created_at", f.since, f.until)
    for analyst, at in Decision.objects.filter(period, analyst__in=analysts).values_list(
        "analyst_id", "created_at"
    ):
        activity[analyst].append(at)
    for analyst, at in AttentionCheck.objects.filter(
        within("decided_at", f.since, f.until),
        analyst__in=analysts,
        outcome=CheckOutcome.MISSED,
    ).values_list("analyst_id", "decided_at"):
        activity[analyst].append(at)
    starts: dict[int, list[datetime]] = {}
    for analyst, times in activity.items():
        times.sort()
        found = [times[0]]
        for before, at in zip(times, times[1:], strict=False):
            if at - before > SHIFT_GAP:
                found.append(at)
        starts[analyst] = found
    return starts


def _start_of(starts: list[datetime], at: datetime) -> datetime:
    """The start of the shift `at` falls in: the last start at or before it."""
    start = starts[0] if starts else at
    for candidate in starts:
        if candidate > at:
            break
        start = candidate
    return start
