"""Agent trust and autonomy readiness: which agent has earned more autonomy, or less."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, Q

from agents.models import Criticality
from approvals.models import ExecutionStatus, ProposalStatus

from . import periods
from .autonomy import TrustRow, levels
from .base import (
    AUTO,
    BAD,
    BAD_OUTCOMES,
    BAND_BOUNDS,
    BANDS,
    DECIDED,
    DECIDED_STATUSES,
    DEFINITIONS,
    DEMOTE_APPROVAL_BELOW,
    DEMOTE_BAD_OUTCOME_ABOVE,
    FINISHED,
    GOOD,
    MIN_SAMPLE,
    PROMOTE_GOOD_SHARE,
    PROMOTE_MIN,
    PROPOSALS,
    THRESHOLDS,
    UNDONE,
    WARNING,
    Chart,
    Filters,
    Point,
    Report,
    Table,
    share,
)
from .query import band_of, counted, proposals, with_execution
from .tally import C_APPROVED, C_DECIDED, C_NC_DECIDED, C_NC_GOOD, Tally

# Per agent and action: (threshold → (decided, good outcomes)); per agent (or per action, on
# an agent's readiness page): (band → (decided, approved)).
Scans = dict[tuple[str, str], dict[float, tuple[int, int]]]
Calibration = dict[str, dict[int, tuple[int, int]]]


def _counts(f: Filters) -> list[tuple[object, ...]]:
    status, ran = ProposalStatus, Q(status=ProposalStatus.AUTO_APPROVED)
    return list(
        with_execution(proposals(f), f)
        .values_list("agent__slug", "action")
        .annotate(
            proposals=counted(),
            decided=counted(Q(status__in=DECIDED_STATUSES)),
            approved=counted(Q(status=status.APPROVED)),
            auto=counted(ran),
            executed=Count("run__id", filter=Q(run__status__in=FINISHED)),
            failed=counted(Q(run__status=ExecutionStatus.FAILED)),
            undone=counted(Q(run__status__in=UNDONE)),
            auto_executed=Count("run__id", filter=ran & Q(run__status__in=FINISHED)),
            auto_bad=counted(ran & Q(run__status__in=BAD_OUTCOMES)),
        )
    )


def _scans(f: Filters) -> Scans:
    """Decided at or above each threshold on non-critical targets, and how many of those were
    approved and not failed or rolled back: one count per confidence band, summed from each
    threshold up."""
    banded: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
    for slug, action, band, n, good in (
        with_execution(proposals(f), f)
        .filter(status__in=DECIDED_STATUSES)
        .exclude(criticality=Criticality.CRITICAL)
        .annotate(band=band_of(THRESHOLDS))
        .values_list("agent__slug", "action", "band")
        .annotate(
            n=counted(),
            good=counted(
                Q(status=ProposalStatus.APPROVED)
                & (Q(run__status__isnull=True) | ~Q(run__status__in=BAD_OUTCOMES)),
            ),
        )
    ):
        banded[(slug, action)][band] = (n, good)
    scans: Scans = defaultdict(dict)
    for key, bands in banded.items():
        for k, x in enumerate(THRESHOLDS, start=1):
            above = [v for band, v in bands.items() if band >= k]
            if above:
                scans[key][x] = (sum(n for n, _ in above), sum(g for _, g in above))
    return scans


def calibration_by(f: Filters, key: str) -> Calibration:
    """Per `key` (the agent's slug here, the action on an agent's readiness page): confidence
    band → (decided by analysts, approved)."""
    calibration: Calibration = defaultdict(dict)
    for group, band, n, approved in (
        proposals(f)
        .filter(status__in=DECIDED_STATUSES, confidence__gte=BAND_BOUNDS[0])
        .annotate(band=band_of(BAND_BOUNDS))
        .values_list(key, "band")
        .annotate(n=counted(), approved=counted(Q(status=ProposalStatus.APPROVED)))
    ):
        calibration[group][band] = (n, approved)
    return calibration


COUNTED = (
    "proposals",
    "decided",
    "approved",
    "auto",
    "executed",
    "failed",
    "undone",
    "auto_executed",
    "auto_bad",
)


def _pairs(p: periods.Period) -> dict[tuple[str, str], Tally]:
    """The period's tallies per agent and action, within the filters."""
    agent, action, analyst = p.key
    return {
        (ag, ac): tally
        for (ag, ac, an), tally in p.tallies.items()
        if ag
        and ac
        and an == analyst
        and (not agent or ag == agent)
        and (not action or ac == action)
        and tally.counts["proposals"]
    }


def _rolled(p: periods.Period) -> tuple[list[tuple[object, ...]], Scans, Calibration]:
    """`_counts`, `_scans` and `calibration_by` from the rollups' per-centile tallies."""
    counts, scans, calibration = [], {}, defaultdict(dict)
    cut = [round(x * 100) for x in THRESHOLDS]
    bands = [round(low * 100) for low in BAND_BOUNDS]
    for (slug, action), tally in sorted(_pairs(p).items()):
        counts.append((slug, action, *(tally.counts[name] for name in COUNTED)))
        found = {}
        for k, low in enumerate(cut, start=1):
            rows = [v for c, v in tally.confidence.items() if c >= low]
            n = sum(v[C_NC_DECIDED] for v in rows)
            if n:
                found[THRESHOLDS[k - 1]] = (n, sum(v[C_NC_GOOD] for v in rows))
        if found:
            scans[(slug, action)] = found
        for c, v in tally.confidence.items():
            if c < bands[0] or not v[C_DECIDED]:
                continue
            band = sum(1 for low in bands if c >= low)
            n, approved = calibration[slug].get(band, (0, 0))
            calibration[slug][band] = (n + v[C_DECIDED], approved + v[C_APPROVED])
    return counts, scans, calibration


def trust_rows(f: Filters) -> tuple[list[TrustRow], Calibration]:
    granted = levels()
    if periods.usable(f):
        counts, scans, calibration = _rolled(periods.period(f, part="counts"))
    else:
        counts, scans, calibration = _counts(f), _scans(f), calibration_by(f, "agent__slug")
    rows = [
        TrustRow(
            slug,
            action,
            granted.get((slug, action), 0),
            *values,
            scan=scans.get((slug, action), {}),
        )
        for slug, action, *values in counts
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


def _points(rows: list[TrustRow]) -> list[Point]:
    """Promotions first, then demotions, then agents not ready for more."""
    advised = [(r, r.advice()) for r in rows]
    points = [
        Point(
            f"{r.agent} is ready for level 3 on {r.action} "
            f"{advice.text.removeprefix('promote to level 3 ')}.",
            GOOD,
        )
        for r, advice in advised
        if advice.kind == "promote"
    ]
    points += [
        Point(
            f"{r.agent} should lose its autonomy on {r.action} (level {r.level}): "
            f"{advice.text.removeprefix('demote to level 2: ')}; at level 2 an analyst "
            "would decide each of them.",
            BAD,
        )
        for r, advice in advised
        if advice.kind == "demote"
    ]
    points += [
        Point(
            f"{r.agent} is not ready for more autonomy on {r.action} (level {r.level}, "
            f"nothing runs without an analyst): {advice.text.split(': ', 1)[1]}.",
            WARNING,
        )
        for r, advice in advised
        if advice.kind == "not ready"
    ]
    if not points:
        points = [
            Point(
                "No agent has earned more autonomy, and none needs less, in this period."
                if rows
                else "Not enough data: no proposals in this period."
            )
        ]
    return points


def _table(rows: list[TrustRow]) -> Table:
    return Table(
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


CONFIDENCE = (
    "the band of the agent's confidence: from its lower bound, included, to its upper "
    "bound, excluded (1.0 falls in 0.9–1.0)."
)


def _calibration_views(calibration: Calibration) -> tuple[Chart, Table]:
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
    table = Table(
        "Calibration by confidence band",
        ["agent", "confidence", DECIDED, "approval rate"],
        cal_rows,
        definitions={
            "confidence": CONFIDENCE,
            DECIDED: DEFINITIONS[DECIDED],
            "approval rate": TRUST_DEFINITIONS["approval rate"],
        },
    )
    return chart, table


def trust(f: Filters) -> Report:
    rows, calibration = trust_rows(f)
    chart, calibration_table = _calibration_views(calibration)
    return Report(
        "trust",
        "Agent trust and autonomy readiness",
        _points(rows),
        chart,
        [_table(rows), calibration_table],
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
        definitions=[*TRUST_DEFINITIONS.items(), ("confidence", CONFIDENCE)],
    )
