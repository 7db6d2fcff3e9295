"""Approval latency: submission → decision by action, agent, analyst and hour, SLA and queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Min, Q
from django.db.models.functions import ExtractHour
from django.utils import timezone

from approvals.models import Decision, Execution, ProposalStatus

from . import periods, tally
from .base import (
    BAD,
    DECIDED,
    DECIDED_STATUSES,
    DECISIONS_ON,
    DEFINITIONS,
    ESCALATED,
    EXPIRED,
    GOOD,
    MIN_SAMPLE,
    NEUTRAL,
    PEAK,
    PENDING,
    SENT,
    SENT_STATUSES,
    SLA_BREACHES,
    SLA_JUDGED,
    WARNING,
    WITHDRAWN,
    Chart,
    Filters,
    Point,
    Report,
    Table,
    defined,
    duration,
    percentile_figures,
    report_zone,
    share,
)
from .histogram import count_above, percentiles
from .query import Grouped, breakdowns, elapsed, horizon, proposal_filter, proposals, within
from .queue import QueueDepth, queue_depth

# (label, n, [p50, p90, p99] or None) per group of one breakdown.
Group = tuple[str, int, list[float | None] | None]
# Two-person approvals: (how many, percentiles to the first approval, to the final one).
TwoPerson = tuple[int, list[float | None] | None, list[float | None] | None]
# Decision → execution: (proposal status, executions started, to start, to finish).
Ran = tuple[str, int, list[float | None], list[float | None] | None]
# Proposal statuses whose executions the machine-side latency follows.
RAN = (ProposalStatus.APPROVED, ProposalStatus.AUTO_APPROVED)


def _groups(found: dict[str, Grouped], label: Callable[[str], str] = str) -> list[Group]:
    return [(label(key), n, pcts[0]) for key, (n, pcts) in found.items()]


def latency_groups(f: Filters) -> dict[str, list[Group]]:
    """Time to the final decision overall, by action, agent and hour; by analyst, to that
    analyst's own decision."""
    decided = proposals(f).filter(status__in=DECIDED_STATUSES)
    found = breakdowns(
        decided,
        [elapsed("decided_at", "created_at")],
        {
            "all": None,
            "action": F("action"),
            "agent": F("agent__slug"),
            "hour": ExtractHour("created_at", tzinfo=ZoneInfo(report_zone())),
        },
    )
    decisions = Decision.objects.filter(
        proposal_filter(f, prefix="proposal__"), within("created_at", f.since, horizon(f))
    ).order_by()
    if f.analyst:
        decisions = decisions.filter(analyst__username=f.analyst)
    by_analyst = breakdowns(
        decisions,
        [elapsed("created_at", "proposal__created_at")],
        {"analyst": F("analyst__username")},
    )
    return {
        "all": _groups(found["all"], lambda _everything: "all"),
        "action": _groups(found["action"]),
        "agent": _groups(found["agent"]),
        "hour": _groups(found["hour"], lambda hour: f"{int(float(hour)):02d}:00"),
        "analyst": _groups(by_analyst["analyst"]),
    }


def two_person(f: Filters) -> TwoPerson:
    """Two-person approvals: how many, and the percentiles to the first and the final one."""
    qs = (
        proposals(f)
        .filter(required_approvals__gte=2, status=ProposalStatus.APPROVED)
        .annotate(
            first_at=Min(
                "decisions__created_at",
                filter=within("decisions__created_at", f.since, horizon(f)),
            )
        )
        .filter(first_at__isnull=False)
    )
    found = breakdowns(
        qs, [elapsed("first_at", "created_at"), elapsed("decided_at", "created_at")], {"all": None}
    )["all"]
    if not found:
        return 0, None, None
    [(n, (first, final))] = found.values()
    return n, first, final


def machine(f: Filters) -> list[Ran]:
    """Decision → execution started and finished, for approved and auto-approved proposals."""
    ran = Execution.objects.filter(
        proposal_filter(f, prefix="proposal__"),
        within("created_at", f.since, horizon(f)),
        started_at__isnull=False,
        proposal__status__in=RAN,
    ).order_by()
    found = breakdowns(
        ran,
        [
            elapsed("started_at", "proposal__decided_at"),
            elapsed("finished_at", "proposal__decided_at"),
        ],
        {"status": F("proposal__status")},
    )["status"]
    return [(str(status), found[status][0], *found[status][1]) for status in RAN if status in found]


@dataclass(frozen=True)
class Sla:
    """Proposals sent to analysts, against the SLA."""

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


def sla_counts(f: Filters) -> Sla:
    sla = timedelta(minutes=f.sla_minutes)
    late = Q(waited__gt=sla.total_seconds())
    status = ProposalStatus
    counts = (
        proposals(f)
        .alias(waited=elapsed("decided_at", "created_at"))
        .aggregate(
            sent=Count("pk", filter=Q(status__in=SENT_STATUSES)),
            decided=Count("pk", filter=Q(status__in=DECIDED_STATUSES)),
            late=Count("pk", filter=Q(status__in=DECIDED_STATUSES) & late),
            expired=Count("pk", filter=Q(status=status.EXPIRED)),
            withdrawn=Count("pk", filter=Q(status=status.WITHDRAWN)),
            withdrawn_late=Count("pk", filter=Q(status=status.WITHDRAWN) & late),
            pending=Count("pk", filter=Q(status=status.PENDING)),
            pending_late=Count(
                "pk", filter=Q(status=status.PENDING, created_at__lt=timezone.now() - sla)
            ),
            escalated=Count("pk", filter=Q(escalated_at__isnull=False)),
        )
    )
    return Sla(f.sla_minutes, **counts)


def _points(groups: dict[str, list[Group]], sla: Sla, queue: QueueDepth) -> list[Point]:
    _, n, pcts = overall(groups)
    o50, o90, _o99 = percentile_figures(n, pcts)
    points: list[Point] = []
    if n < MIN_SAMPLE:
        points.append(Point(f"Not enough data: {n} proposals {DECIDED} in this period."))
    else:
        points.append(
            Point(
                f"Half of the {n} proposals {DECIDED} were decided within {o50}"
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
            (label, values[0])
            for label, count, values in groups["hour"]
            if count >= MIN_SAMPLE and values and values[0] is not None
        ]
        if slow:
            worst = max(slow, key=lambda item: item[1])
            points.append(
                Point(
                    f"Slowest hour of day ({report_zone()}): {worst[0]} "
                    f"(median {duration(worst[1])})."
                )
            )
    if queue.peak:
        points.append(
            Point(
                f"The queue peaked at {queue.peak} proposals pending at once ({queue.peak_label})."
            )
        )
    return points


def overall(groups: dict[str, list[Group]]) -> Group:
    return groups["all"][0] if groups["all"] else ("all", 0, None)


def _breakdown(groups: dict[str, list[Group]], title: str, key: str, counted: str) -> Table:
    items = sorted(groups[key], key=lambda item: item[0])
    return Table(
        title,
        [title.split(" by ")[-1], counted, "p50", "p90", "p99"],
        [[label, n, *percentile_figures(n, pcts)] for label, n, pcts in items],
        definitions=defined(counted),
    )


def _overall_table(groups: dict[str, list[Group]], two: TwoPerson, ran: list[Ran]) -> Table:
    _, n, pcts = overall(groups)
    pairs, first, final = two
    return Table(
        "Latency overall",
        ["measure", "count", "p50", "p90", "p99"],
        [
            ["submission → final decision", n, *percentile_figures(n, pcts)],
            ["two-person: → first approval", pairs, *percentile_figures(pairs, first)],
            ["two-person: → final approval", pairs, *percentile_figures(pairs, final)],
            *[
                [f"{status.replace('_', '-')} → execution started", n, *percentile_figures(n, s)]
                for status, n, s, _fin in ran
            ],
            *[
                [
                    f"{status.replace('_', '-')} → execution finished",
                    n,
                    *percentile_figures(n, fin),
                ]
                for status, n, _s, fin in ran
            ],
        ],
    )


def _sla_table(sla: Sla, queue: QueueDepth) -> Table:
    minutes = sla.minutes
    return Table(
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
    )


def _tables(
    groups: dict[str, list[Group]], two: TwoPerson, ran: list[Ran], sla: Sla, queue: QueueDepth
) -> list[Table]:
    tz = report_zone()
    by_hour = _breakdown(groups, f"Latency by hour of day ({tz})", "hour", DECIDED)
    by_hour.folded = True
    return [
        _overall_table(groups, two, ran),
        _sla_table(sla, queue),
        _breakdown(groups, "Latency by action", "action", DECIDED),
        _breakdown(groups, "Latency by agent", "agent", DECIDED),
        _breakdown(groups, "Latency by analyst", "analyst", DECISIONS_ON),
        by_hour,
        Table(
            "Queue depth over time",
            [f"interval from ({tz})", "most pending at once", "pending at its end"],
            [list(row) for row in queue.series],
            True,
        ),
    ]


def _charts(groups: dict[str, list[Group]], queue: QueueDepth) -> tuple[Chart, Chart]:
    hours = sorted(groups["hour"], key=lambda item: item[0])
    by_hour = Chart(
        "bars",
        f"Median and p90 time to decision by hour of day ({report_zone()})",
        [label for label, _, _ in hours],
        {
            "p50": [p.value for p in (percentile_figures(n, v)[0] for _, n, v in hours)],
            "p90": [p.value for p in (percentile_figures(n, v)[1] for _, n, v in hours)],
        },
    )
    depth = Chart(
        "lines",
        "Queue depth: most proposals pending at once, by interval",
        [label for label, _, _ in queue.series],
        {"most pending at once": [float(most) for _, most, _ in queue.series]},
        unit="",
    )
    return by_hour, depth


LATENCY_POPULATIONS = (
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


def rolled_figures(
    f: Filters, p: periods.Period
) -> tuple[dict[str, list[Group]], Sla, TwoPerson, list[Ran]]:
    """The same figures from the period's rollups (`audit.reports.rollup`): counts exact,
    percentiles within 2 %."""
    agent, action, analyst = p.key
    own = p.tallies.get(p.key) or tally.Tally()

    def group(label: str, histogram: dict[int, int]) -> Group:
        return (label, sum(histogram.values()), percentiles(histogram))

    def across(position: int) -> list[Group]:
        if p.key[position]:
            return [group(p.key[position], own.wait)] if own.wait else []
        return [
            group(key[position], tally.wait)
            for key, tally in p.tallies.items()
            if key[position]
            and key[2] == analyst
            and tally.wait
            and key[1 - position] == p.key[1 - position]
        ]

    groups = {
        "all": [group("all", own.wait)] if own.wait else [],
        "action": across(1),
        "agent": across(0),
        "hour": [group(f"{hour:02d}:00", h) for hour, h in own.hours.items() if h],
        "analyst": [group(name, h) for name, h in own.analysts.items() if h],
    }
    counts = own.counts
    sla = timedelta(minutes=f.sla_minutes)
    due = (timezone.now() - sla).timestamp()
    figures = Sla(
        f.sla_minutes,
        sent=counts["sent"],
        decided=counts["decided"],
        late=count_above(own.wait, sla.total_seconds()),
        expired=counts["expired"],
        withdrawn=counts["withdrawn"],
        withdrawn_late=count_above(own.withdrawn_wait, sla.total_seconds()),
        pending=counts["pending"],
        pending_late=sum(1 for at in own.pending_at if at < due),
        escalated=counts["escalated"],
    )
    two: TwoPerson = (0, None, None)
    if counts["two_person"]:
        two = (
            counts["two_person"],
            percentiles(own.first),
            percentiles(own.final),
        )
    ran = [
        (
            str(status),
            own.ran[status][0],
            percentiles(own.ran[status][1]) or [],
            percentiles(own.ran[status][2]),
        )
        for status in RAN
        if status in own.ran
    ]
    return groups, figures, two, ran


def latency(f: Filters) -> Report:
    """Submission → decision, by action, agent, analyst and hour of day, plus SLA and queue."""
    if periods.usable(f):
        p = periods.period(f)
        groups, sla, two, ran = rolled_figures(f, p)
        queue = queue_depth(f, slots=p.queue) if periods.aligned(f) else queue_depth(f)
    else:
        groups = latency_groups(f)
        sla, queue, ran, two = sla_counts(f), queue_depth(f), machine(f), two_person(f)
    chart, queue_chart = _charts(groups, queue)
    return Report(
        "latency",
        "Approval latency",
        _points(groups, sla, queue),
        chart,
        _tables(groups, two, ran, sla, queue),
        counted="proposals submitted",
        notes=[
            "Latency is measured from submission to the final decision; by analyst, to that "
            f"analyst's own decision. SLA: a decision within {f.sla_minutes} min of "
            f"submission. Hours of day are in {report_zone()}.",
        ],
        extra_charts=[queue_chart],
        definitions=[(name, DEFINITIONS[name]) for name in LATENCY_POPULATIONS],
    )
