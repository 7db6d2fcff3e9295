"""Daily rollups: the reports' figures per local day, so that a report over a year reads a few
hundred rows instead of millions.

A day's rollup holds, per agent, action and analyst ("" for every one), what the latency,
trust and what-if reports count about the proposals submitted that day (a `Tally`: counts by
status and outcome, per confidence centile the tallies the trust and what-if reports replay,
latency histograms, the queue's arrivals and departures by hour), and what the fatigue report
counts about the decisions given that day (a `shifts.Summary` per analyst and filter). Whole
months are merged into a month row.

A report uses the rollups of the whole days it spans that have been built (`ReportRollupDay`)
and, for the rest (today, partial days, days not built yet), builds the same figures from the
rows (`periods`); with no built day in its span it runs its exact statements. Counts are the
same either way; percentiles are within 2 % (`histogram`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Min, Value
from django.db.models.functions import ExtractHour
from django.utils import timezone

from approvals.models import Decision, Proposal

from ..bulk import write_rows
from ..models import ReportRollup, ReportRollupDay, ShiftRollup
from ..sql import Seconds, rollup_lock
from . import shift_rollup
from .base import SENT_STATUSES, report_zone
from .query import elapsed, longest_life
from .tally import Contribution, Tally, apply, contribution, queue_slots

DAY = timedelta(days=1)
IN_FLIGHT = timedelta(seconds=5)

# --- building: from the rows of a time range ---------------------------------------------------

Key = tuple[str, str, str]  # agent slug, action, analyst username; "" for every one


@dataclass
class Chosen:
    """Which rows a build needs: every key (a day's rollup), or the ones a report reads."""

    agent: str = ""
    action: str = ""
    analyst: str = ""
    every: bool = True

    def narrow(self, proposals: Any) -> Any:
        """The proposals of this choice's agent, action and analyst."""
        if self.agent:
            proposals = proposals.filter(agent__slug=self.agent)
        if self.action:
            proposals = proposals.filter(action=self.action)
        if self.analyst:
            proposals = proposals.filter(decisions__analyst__username=self.analyst)
        return proposals

    def keys(self, agent: str, action: str, analysts: Iterable[str]) -> Iterator[Key]:
        if self.every:
            for ag in (agent, ""):
                for ac in (action, ""):
                    yield ag, ac, ""
                    for an in analysts:
                        yield ag, ac, an
            return
        if self.agent and agent != self.agent or self.action and action != self.action:
            return
        if self.analyst and self.analyst not in analysts:
            return
        an = self.analyst
        # The filter's own row, and the breakdowns by action and by agent within it.
        yield self.agent, self.action, an
        if not self.action:
            yield self.agent, action, an
        if not self.agent:
            yield agent, self.action, an
        if not self.agent and not self.action:
            yield agent, action, an  # trust and what-if read agent and action together


def _since(field: str, moment: datetime) -> Seconds:
    """Seconds from `moment` to a datetime column, as a float, on either database."""
    return Seconds(
        ExpressionWrapper(
            F(field) - Value(moment, output_field=DateTimeField()), output_field=DurationField()
        )
    )


def build(
    start: datetime, end: datetime, chosen: Chosen | None = None, *, origin: datetime | None = None
) -> dict[Key, Tally]:
    """The tallies of the proposals submitted in [start, end), and the queue's moves in it
    by hour from `origin` (by default `start`), per key: a stretch that does not start on
    the hour (what came after today's rollup was built) counts its moves in the report's own
    hours, not in hours of its own that straddle them.

    Durations come from the database as seconds (the exact statements' own expression, so
    that a latency of exactly N minutes is N minutes here too), and moments as seconds from
    `start`: reading millions of timestamps as datetimes cost more than the rest."""
    chosen = chosen or Chosen()
    shift = (start - origin).total_seconds() if origin is not None else 0.0
    tallies: dict[Key, Tally] = defaultdict(Tally)
    moves: dict[Key, list[tuple[float, int]]] = defaultdict(list)
    for keys, counted, arrived, created in _submissions(start, end, chosen):
        for key in keys:
            apply(tallies[key], counted, only=key[2])
        for key in arrived:
            moves[key].append((created + shift, 1))
    # Departures in the range, whenever their proposal was submitted.
    for key, at in _departures(start, end, chosen):
        moves[key].append((at + shift, -1))
    if chosen.every:
        # A day's build tallies each agent and action apart and adds them up here.
        for (agent, action, analyst), tally in list(tallies.items()):
            for key in ((agent, "", analyst), ("", action, analyst), ("", "", analyst)):
                tallies[key].merge(tally)
    for key, events in moves.items():
        tallies[key].queue = queue_slots(events)
    return dict(tallies)


def _analysts_of(proposals: Any, *fields: Any) -> dict[Any, list[Any]]:
    """Per proposal id, its decisions' analysts (and `fields` of each)."""
    found: dict[Any, list[Any]] = defaultdict(list)
    for proposal_id, *values in (
        Decision.objects.filter(proposal__in=proposals.values("pk"))
        .order_by()
        .values_list("proposal_id", "analyst__username", *fields)
    ):
        found[proposal_id].append(tuple(values) if fields else values[0])
    return found


def _submissions(
    start: datetime, end: datetime, chosen: Chosen
) -> Iterator[tuple[Iterable[Key], Contribution, Iterable[Key], float]]:
    """Per proposal submitted in the range: the keys it counts in, what it counts, the keys
    whose queue it joined, and when (seconds from `start`)."""
    # Attention checks are the console's, not an agent's: no report counts them (as
    # `query.proposal_filter` leaves them out of the exact statements).
    submitted = chosen.narrow(
        Proposal.objects.filter(
            created_at__gte=start, created_at__lt=end, synthetic=False
        ).order_by()
    )
    decisions = _analysts_of(submitted, elapsed("created_at", "proposal__created_at"))
    rows = submitted.values_list(
        "id",
        "agent__slug",
        "action",
        "status",
        "confidence",
        "criticality",
        _since("created_at", start),
        elapsed("decided_at", "created_at"),
        "escalated_at",
        "required_approvals",
        "execution__status",
        elapsed("execution__started_at", "decided_at"),
        elapsed("execution__finished_at", "decided_at"),
        ExtractHour("created_at", tzinfo=ZoneInfo(report_zone())),
    )
    start_epoch = start.timestamp()
    for pid, agent, action, status, confidence, criticality, created, *rest in rows:
        waited, escalated_at, required, run, to_start, to_finish, hour = rest
        given = decisions.get(pid, [])
        analysts = sorted({name for name, _ in given})
        counted = contribution(
            status,
            confidence,
            criticality,
            created + start_epoch,
            waited,
            escalated_at is not None,
            required,
            run,
            to_start,
            to_finish,
            given,
            hour,
        )
        keys = (
            _finest(agent, action, analysts)
            if chosen.every
            else chosen.keys(agent, action, analysts)
        )
        arrived = chosen.keys(agent, action, analysts) if status in SENT_STATUSES else ()
        yield keys, counted, arrived, created


def _departures(start: datetime, end: datetime, chosen: Chosen) -> Iterator[tuple[Key, float]]:
    """The queue's departures in the range (seconds from `start`), whenever their proposal
    was submitted, per key."""
    departed = chosen.narrow(
        Proposal.objects.filter(
            status__in=SENT_STATUSES,
            decided_at__gte=start,
            decided_at__lt=end,
            created_at__gte=start - longest_life(),
            created_at__lt=end,
            synthetic=False,
        ).order_by()
    )
    analysts_of = _analysts_of(departed)
    for pid, agent, action, at in departed.values_list(
        "id", "agent__slug", "action", _since("decided_at", start)
    ):
        for key in chosen.keys(agent, action, sorted(set(analysts_of.get(pid, [])))):
            yield key, at


def _finest(agent: str, action: str, analysts: list[str]) -> Iterator[Key]:
    yield agent, action, ""
    for analyst in analysts:
        yield agent, action, analyst


# --- storing -----------------------------------------------------------------------------------


def day_bounds(day: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(report_zone())
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + DAY, time(), zone).astimezone(UTC)
    return start, end


def local_day(at: datetime) -> date:
    return at.astimezone(ZoneInfo(report_zone())).date()


def rollup_day(day: date, *, month: bool = True) -> int:
    """Rebuild one local day's rollups and (unless told not to, when a caller rebuilding
    many days merges each month once) its month's; returns the proposals counted."""
    start, end = day_bounds(day)
    with transaction.atomic():
        rollup_lock(day.year, day.month)
        # A day in progress is counted up to a few seconds ago: a proposal stamped just
        # before may not have committed yet, and the reports take the rest from the rows.
        until = min(end, timezone.now() - IN_FLIGHT)
        if until <= start:
            return 0
        tallies = build(start, until)
        ReportRollup.objects.filter(period="day", day=day).delete()
        ShiftRollup.objects.filter(period="day", day=day).delete()
        _write("day", day, tallies)
        # Approval fatigue: the decisions given in the same stretch of the day.
        shift_rollup.write("day", day, shift_rollup.build(start, until))
        proposals = tallies[("", "", "")].counts["proposals"] if ("", "", "") in tallies else 0
        ReportRollupDay.objects.update_or_create(
            day=day, defaults={"built_at": until, "proposals": proposals}
        )
        if month:
            rollup_month(day.replace(day=1))
    return proposals


ROLLUP_COLUMNS = ("period", "day", "agent", "action", "analyst", *Tally().columns())


def _write(period: str, day: date, tallies: dict[Key, Tally]) -> None:
    """The rows with COPY (a day's hold a few megabytes of JSON at ten million decisions a
    year, which the ORM's bulk insert escapes character by character)."""
    write_rows(
        ReportRollup._meta.db_table,
        ROLLUP_COLUMNS,
        [
            (period, day, *key, *(json.dumps(value) for value in tally.columns().values()))
            for key, tally in tallies.items()
        ],
    )


def month_days(first: date) -> list[date]:
    days, day = [], first
    while day.month == first.month:
        days.append(day)
        day += DAY
    return days


def rollup_month(first: date) -> None:
    """The month's row per key, merged from its day rows, when every day of it is built."""
    days = month_days(first)
    rollup_lock(first.year, first.month)
    ReportRollup.objects.filter(period="month", day=first).delete()
    ShiftRollup.objects.filter(period="month", day=first).delete()
    if ReportRollupDay.objects.filter(day__in=days).count() < len(days):
        return
    month_start = day_bounds(first)[0]
    merged: dict[Key, Tally] = defaultdict(Tally)
    for row in ReportRollup.objects.filter(period="day", day__in=days).order_by("day"):
        tally = Tally.from_columns(row.counts, row.wait, row.confidence, row.detail)
        shift = round((day_bounds(row.day)[0] - month_start).total_seconds() / 3600)
        tally.queue = {
            slot + shift: (net, most, at + shift * 3600)
            for slot, (net, most, at) in tally.queue.items()
        }
        merged[(row.agent, row.action, row.analyst)].merge(tally, queue=True)
    _write("month", first, merged)
    shift_rollup.write("month", first, shift_rollup.merge_stored(days))


def rollup_all(since: date | None = None, until: date | None = None) -> Iterator[tuple[date, int]]:
    """Rebuild every day from the first proposal (or `since`) to today (or `until`)."""
    if since is None:
        first = Proposal.objects.aggregate(first=Min("created_at"))["first"]
        if first is None:
            return
        since = local_day(first)
    until = until or local_day(timezone.now())
    day = since
    while day <= until:
        yield day, rollup_day(day, month=False)
        if day == until or (day + DAY).month != day.month:
            with transaction.atomic():
                rollup_month(day.replace(day=1))
        day += DAY
