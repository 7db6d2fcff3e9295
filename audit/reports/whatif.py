"""Threshold what-if: the period's proposals replayed with another auto threshold."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models import Case, Q, Value, When

from agents.models import Criticality
from approvals.models import ProposalStatus

from . import periods
from .autonomy import eligible_pairs
from .base import (
    AUTO,
    BAD_OUTCOMES,
    DEFINITIONS,
    MIN_SAMPLE,
    NEUTRAL,
    SENT,
    SENT_STATUSES,
    THRESHOLDS,
    WARNING,
    Chart,
    Filters,
    Point,
    Report,
    Table,
)
from .query import band_of, counted, proposals, with_execution
from .tally import NON_CRITICAL


@dataclass
class WhatIf:
    label: str
    sent: int  # sent to analysts
    covered: int  # of those, a pair the replayed grants cover, on a non-critical target
    would_auto: int  # of those, at or above the threshold
    rejected: int
    undone: int
    expired: int
    auto_now: int  # ran without a human
    auto_below: int  # of those, below the threshold


COVERED = "covered by such grants"
WOULD = "would have run without a human"
BELOW = "of those below the threshold"


def _whatif_definitions(scope: str) -> dict[str, str]:
    grants = (
        "level 3 on a reversible action, or level 4"
        if scope == "granted"
        else "any reversible action granted level 2 or more, as if level 3, and level 4"
    )
    return {
        SENT: DEFINITIONS[SENT],
        COVERED: f"proposals {SENT} for an agent and action the replayed grants cover ({grants}) "
        "on a non-critical target, whatever their confidence: the only ones a lower threshold "
        "could let run alone.",
        WOULD: "of those covered, the ones at or above the threshold.",
        AUTO: DEFINITIONS[AUTO],
        BELOW: f"proposals that {AUTO} with a confidence below the threshold: under it, each "
        "would have needed an analyst.",
    }


# One group of the period's proposals: (agent slug, action, criticality, confidence band) and
# its counts: sent to analysts, rejected, approved but failed or rolled back, expired, and
# auto-approved.
Tally = tuple[str, str, str, int, int, int, int, int, int]


def _tallies(f: Filters, band: Case) -> list[Tally]:
    status = ProposalStatus
    return list(
        with_execution(proposals(f), f)
        .annotate(band=band)
        .values_list("agent__slug", "action", "criticality", "band")
        .annotate(
            sent=counted(Q(status__in=SENT_STATUSES)),
            rejected=counted(Q(status=status.REJECTED)),
            undone=counted(Q(status=status.APPROVED, run__status__in=BAD_OUTCOMES)),
            expired=counted(Q(status=status.EXPIRED)),
            auto=counted(Q(status=status.AUTO_APPROVED)),
        )
    )


def _replay(
    label: str,
    tallies: Iterable[Tally],
    pairs: set[tuple[str, str]],
    above: Callable[[int], bool],
) -> WhatIf:
    """The what-if over some tallies, `above` telling which bands reach the threshold."""
    out = WhatIf(label, 0, 0, 0, 0, 0, 0, 0, 0)
    for slug, action, criticality, band, sent, rejected, undone, expired, auto in tallies:
        out.sent += sent
        out.auto_now += auto
        if not above(band):
            out.auto_below += auto
        # Only a grant the replay covers, on a non-critical target, could run alone.
        if (slug, action) not in pairs or criticality == Criticality.CRITICAL:
            continue
        out.covered += sent
        if above(band):
            out.would_auto += sent
            out.rejected += rejected
            out.undone += undone
            out.expired += expired
    return out


def _rolled_tallies(p: periods.Period, band: Callable[[int], int]) -> list[Tally]:
    """`_tallies` from the rollups' per-centile tallies, `band` giving a centile's band."""
    agent, action, analyst = p.key
    out: dict[tuple[str, str, str, int], list[int]] = {}
    for (ag, ac, an), tally in p.tallies.items():
        if not (ag and ac and an == analyst) or (agent and ag != agent):
            continue
        if action and ac != action:
            continue
        for c, v in tally.confidence.items():
            for criticality, offset in ((Criticality.CRITICAL, 0), ("other", NON_CRITICAL)):
                counted = v[offset : offset + 5]
                if any(counted):
                    key = (ag, ac, criticality, band(c))
                    mine = out.get(key)
                    out[key] = (
                        counted
                        if mine is None
                        else [a + b for a, b in zip(mine, counted, strict=True)]
                    )
    return [(*key, *values) for key, values in sorted(out.items())]  # type: ignore[misc]


def _threshold_tallies(f: Filters, threshold: float, p: periods.Period | None) -> list[Tally]:
    if p is not None:
        cut = round(threshold * 100)
        return _rolled_tallies(p, lambda c: 1 if c >= cut else 0)
    return _tallies(f, Case(When(confidence__gte=threshold, then=Value(1)), default=Value(0)))


def _curve_tallies(f: Filters, p: periods.Period | None) -> list[Tally]:
    if p is not None:
        cuts = [round(x * 100) for x in THRESHOLDS]
        return _rolled_tallies(p, lambda c: sum(1 for low in cuts if c >= low))
    return _tallies(f, band_of(THRESHOLDS))


def whatif_rows(f: Filters, threshold: float, p: periods.Period | None = None) -> list[WhatIf]:
    """Overall ('all') and per agent and action, at one threshold."""
    tallies = _threshold_tallies(f, threshold, p)
    pairs = eligible_pairs(f.scope)
    groups: dict[str, list[Tally]] = defaultdict(list)
    for tally in tallies:
        groups[f"{tally[0]} · {tally[1]}"].append(tally)
    out = [_replay("all", tallies, pairs, lambda band: band == 1)]
    out += [_replay(label, group, pairs, lambda band: band == 1) for label, group in groups.items()]
    out.sort(key=lambda w: (w.label != "all", w.label))
    return out


def whatif_curve(f: Filters, p: periods.Period | None = None) -> list[WhatIf]:
    """The overall what-if at every threshold of THRESHOLDS, from one count per confidence
    band (band k: at or above THRESHOLDS[k-1], below the next)."""
    tallies = _curve_tallies(f, p)
    pairs = eligible_pairs(f.scope)
    return [
        _replay(f"{x:.2f}", tallies, pairs, lambda band, k=k: band >= k)
        for k, x in enumerate(THRESHOLDS, start=1)
    ]


def _points(f: Filters, total: WhatIf) -> list[Point]:
    x = f"{f.threshold:.2f}"
    scope = (
        "the level 3 and 4 grants as they are"
        if f.scope == "granted"
        else "every reversible action as if granted level 3"
    )
    if total.sent + total.auto_now < MIN_SAMPLE:
        return [
            Point(
                f"Not enough data: {total.sent + total.auto_now} proposals {SENT} or that "
                f"{AUTO} in this period."
            )
        ]
    points = [
        Point(
            f"At an auto threshold of {x}, with {scope}: of the {total.sent} proposals "
            f"{SENT}, {total.covered} were {COVERED} (on a non-critical target), and "
            f"{total.would_auto} of those were at or above {x}: they would have run "
            "without a human."
        )
    ]
    if total.would_auto:
        risky = total.rejected + total.undone
        points.append(
            Point(
                f"Analysts had rejected {total.rejected} of those {total.would_auto}"
                + (
                    f", {total.undone} more were approved but later failed or were rolled back"
                    if total.undone
                    else ""
                )
                + (f", and {total.expired} had expired unanswered" if total.expired else "")
                + ".",
                WARNING if risky else NEUTRAL,
            )
        )
    points.append(
        Point(
            f"{total.auto_below} of the {total.auto_now} proposals that {AUTO} were below "
            f"{x}: each would have needed an analyst."
        )
    )
    return points


def _tables(f: Filters, rows: list[WhatIf], curve: list[WhatIf]) -> list[Table]:
    definitions = _whatif_definitions(f.scope)
    table = Table(
        f"What-if at threshold {f.threshold:.2f}",
        [
            "agent · action",
            SENT,
            COVERED,
            WOULD,
            "of those rejected",
            "of those approved but failed or rolled back",
            "of those expired",
            AUTO,
            BELOW,
        ],
        [
            [
                w.label,
                w.sent,
                w.covered,
                w.would_auto,
                w.rejected,
                w.undone,
                w.expired,
                w.auto_now,
                w.auto_below,
            ]
            for w in rows
        ],
        definitions=definitions,
    )
    curve_table = Table(
        "What-if by threshold",
        ["threshold", WOULD, "of those rejected", f"{AUTO}: {BELOW}"],
        [
            [f"{x:.2f}", w.would_auto, w.rejected, w.auto_below]
            for x, w in zip(THRESHOLDS, curve, strict=True)
        ],
        definitions={WOULD: definitions[WOULD], f"{AUTO}: {BELOW}": definitions[BELOW]},
    )
    return [table, curve_table]


def whatif(f: Filters) -> Report:
    p = periods.period(f, part="counts") if periods.usable(f) else None
    rows = whatif_rows(f, f.threshold, p)
    curve = whatif_curve(f, p)
    chart = Chart(
        "lines",
        "What a threshold changes: runs alone, rejected among them, and runs taken back",
        [f"{x:.2f}" for x in THRESHOLDS],
        {
            WOULD: [float(w.would_auto) for w in curve],
            "of those rejected": [float(w.rejected) for w in curve],
            f"{AUTO}, would need one": [float(w.auto_below) for w in curve],
        },
        unit="",
    )
    return Report(
        "whatif",
        "Threshold what-if",
        _points(f, rows[0]),
        chart,
        _tables(f, rows, curve),
        counted="proposals submitted",
        notes=[
            "Replays the period's proposals as routed today, with only the auto threshold "
            "changed: critical targets always need a human, and level 3 only ever covers "
            "reversible actions. A higher threshold takes runs back from the agent, a lower "
            "one gives it more: read both columns.",
        ],
        definitions=list(_whatif_definitions(f.scope).items()),
    )
