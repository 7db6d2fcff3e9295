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
# Every confidence at which a threshold's scan or a calibration band starts: the exact
# statement counts each slice between two of them once, and both are sums of slices.
CUTS = sorted({*THRESHOLDS, *BAND_BOUNDS})
SCAN_FROM = {x: CUTS.index(x) + 1 for x in THRESHOLDS}
BAND_OF_CUT = {k: sum(1 for low in BAND_BOUNDS if low <= cut) for k, cut in enumerate(CUTS, 1)}


def _sliced(f: Filters) -> list[tuple[object, ...]]:
    """Per agent, action and confidence slice (k: at or above CUTS[k-1], 0: below them all):
    the COUNTED figures, then the decided on non-critical targets and how many of those were
    approved and not failed or rolled back. One scan of the period: the counts, the scans and
    the calibration used to read it three times (0.17 against 0.08 s over 28 days of the
    100,000-decision benchmark)."""
    status, ran = ProposalStatus, Q(status=ProposalStatus.AUTO_APPROVED)
    scanned = Q(status__in=DECIDED_STATUSES) & ~Q(criticality=Criticality.CRITICAL)
    return list(
        with_execution(proposals(f), f)
        .annotate(cut=band_of(CUTS))
        .values_list("agent__slug", "action", "cut")
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
            scanned=counted(scanned),
            good=counted(
                scanned
                & Q(status=status.APPROVED)
                & (Q(run__status__isnull=True) | ~Q(run__status__in=BAD_OUTCOMES))
            ),
        )
    )


def _exact(f: Filters, by: int) -> tuple[list[tuple[object, ...]], Scans, Calibration]:
    """The counts per agent and action, the scans and the calibration (keyed by the agent, by
    0, or the action, by 1), summed from the slices of `_sliced`."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(COUNTED))
    slices: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
    calibration: Calibration = defaultdict(dict)
    for slug, action, cut, *values in _sliced(f):
        key = (slug, action)
        counts, (scanned, good) = values[: len(COUNTED)], values[len(COUNTED) :]
        totals[key] = [a + b for a, b in zip(totals[key], counts, strict=True)]
        slices[key][cut] = (scanned, good)
        band = BAND_OF_CUT.get(cut)
        decided, approved = counts[COUNTED.index("decided")], counts[COUNTED.index("approved")]
        if band and decided:
            n, yes = calibration[key[by]].get(band, (0, 0))
            calibration[key[by]][band] = (n + decided, yes + approved)
    scans: Scans = {}
    for key, cut in slices.items():
        found = {}
        for x, first in SCAN_FROM.items():
            n = sum(v[0] for k, v in cut.items() if k >= first)
            if n:
                found[x] = (n, sum(v[1] for k, v in cut.items() if k >= first))
        if found:
            scans[key] = found
    counts = [(slug, action, *totals[(slug, action)]) for slug, action in sorted(totals)]
    return counts, scans, calibration


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


def _rolled(p: periods.Period, by: int) -> tuple[list[tuple[object, ...]], Scans, Calibration]:
    """`_exact` from the rollups' per-centile tallies."""
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
        group = (slug, action)[by]
        for c, v in tally.confidence.items():
            if c < bands[0] or not v[C_DECIDED]:
                continue
            band = sum(1 for low in bands if c >= low)
            n, approved = calibration[group].get(band, (0, 0))
            calibration[group][band] = (n + v[C_DECIDED], approved + v[C_APPROVED])
    return counts, scans, calibration


def trust_rows(f: Filters, *, by: str = "agent") -> tuple[list[TrustRow], Calibration]:
    """Each agent's record per action, and its calibration per agent (or per action, `by`)."""
    granted = levels()
    key = ("agent", "action").index(by)
    if periods.usable(f):
        counts, scans, calibration = _rolled(periods.period(f, part="counts"), key)
    else:
        counts, scans, calibration = _exact(f, key)
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
