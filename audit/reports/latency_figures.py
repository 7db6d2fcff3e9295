"""Approval latency's figures: time to decision by action, agent, analyst and hour, two-person
approvals, decision to execution, and the SLA's counts; read from the proposals or, for a
period the daily rollups cover, from those (audit/reports/periods.py). latency.py reports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.db.models import F, Min, Q
from django.db.models.functions import ExtractHour
from django.utils import timezone

from approvals.models import Decision, Execution, ProposalStatus

from .base import (
    BAD,
    DECIDED_STATUSES,
    GOOD,
    NEUTRAL,
    SENT_STATUSES,
    SLA_JUDGED,
    WARNING,
    Filters,
    Point,
    report_zone,
    share,
)
from .histogram import count_above, percentiles
from .periods import Period
from .query import (
    Grouped,
    breakdowns,
    counted,
    elapsed,
    horizon,
    proposal_filter,
    proposals,
    within,
)
from .tally import Tally

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
            sent=counted(Q(status__in=SENT_STATUSES)),
            decided=counted(Q(status__in=DECIDED_STATUSES)),
            late=counted(Q(status__in=DECIDED_STATUSES) & late),
            expired=counted(Q(status=status.EXPIRED)),
            withdrawn=counted(Q(status=status.WITHDRAWN)),
            withdrawn_late=counted(Q(status=status.WITHDRAWN) & late),
            pending=counted(Q(status=status.PENDING)),
            pending_late=counted(Q(status=status.PENDING, created_at__lt=timezone.now() - sla)),
            escalated=counted(Q(escalated_at__isnull=False)),
        )
    )
    return Sla(f.sla_minutes, **counts)


def _rolled_groups(p: Period, own: Tally) -> dict[str, list[Group]]:
    """Time to decision by group, from the period's tallies: `own` is the filter's own."""
    analyst = p.key[2]

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

    return {
        "all": [group("all", own.wait)] if own.wait else [],
        "action": across(1),
        "agent": across(0),
        "hour": [group(f"{hour:02d}:00", h) for hour, h in own.hours.items() if h],
        "analyst": [group(name, h) for name, h in own.analysts.items() if h],
    }


def rolled_figures(
    f: Filters, p: Period
) -> tuple[dict[str, list[Group]], Sla, TwoPerson, list[Ran]]:
    """The same figures from the period's rollups (`audit.reports.rollup`): counts exact,
    percentiles within 2 %."""
    own = p.tallies.get(p.key) or Tally()
    groups = _rolled_groups(p, own)
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
