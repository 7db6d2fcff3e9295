"""Approval latency: submission → decision by action, agent, analyst and hour, SLA and queue.

The figures come from latency_figures.py; this module says what they show."""

from __future__ import annotations

from . import periods
from .base import (
    DECIDED,
    DECISIONS_ON,
    DEFINITIONS,
    ESCALATED,
    EXPIRED,
    MIN_SAMPLE,
    PEAK,
    PENDING,
    SENT,
    SLA_BREACHES,
    SLA_JUDGED,
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
)
from .latency_figures import (
    Group,
    Ran,
    Sla,
    TwoPerson,
    latency_groups,
    machine,
    rolled_figures,
    sla_counts,
    two_person,
)
from .queue import QueueDepth, queue_depth


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
