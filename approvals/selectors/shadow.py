"""A shadow policy's score: what it would have done with the proposals it judged, set against
what the live policy did and what analysts then decided.

Computed when read, from the outcome recorded on each proposal at submission and the
proposal's and execution's state now: a rollback an hour after an approval turns an agreement
into harm avoided without anything else having to remember it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import median

from django.conf import settings
from django.db.models import Sum

from agents import ladder
from agents.models import Agent, Policy

from ..models import ExecutionStatus, Proposal, ProposalStatus
from .payloads import proposals_with_details

# The categories each judged proposal falls in (one each).
AGREEMENT = "agreement"
HARM_AVOIDED = "harm_avoided"
EXTRA_LOAD = "extra_load"
WOULD_BLOCK = "would_block"
OTHER = "other"
SAME = "same"
UNSETTLED = "unsettled"

DEFINITIONS = {
    AGREEMENT: "the shadow would have run it at once; the live policy asked an analyst, who "
    "approved it, and it was not rolled back.",
    HARM_AVOIDED: "the shadow would have run it at once; the live policy asked an analyst, who "
    "rejected it, or approved it and it was later rolled back.",
    EXTRA_LOAD: "the shadow would have asked an analyst; the live policy did not (it ran it, "
    "blocked it, or set it aside as advisory or flagged).",
    WOULD_BLOCK: "the shadow would have blocked it; the live policy did not.",
    OTHER: "another difference: the shadow would have set aside (advisory or flagged) what the "
    "live policy queued or ran, or run what it set aside or blocked (no analyst judged it).",
    SAME: "the shadow would have routed it as the live policy did.",
    UNSETTLED: "the shadow would have run it at once and the live policy asked an analyst, "
    "whose verdict has not come (still pending) or never came (expired, withdrawn): it cannot "
    "be scored.",
}

LABELS = {
    AGREEMENT: "agreement",
    HARM_AVOIDED: "harm avoided",
    EXTRA_LOAD: "extra load",
    WOULD_BLOCK: "would have blocked",
    OTHER: "other difference",
    SAME: "routed as the live policy",
    UNSETTLED: "waiting for a verdict",
}

# Executions an analyst or the agent undid after they ran.
UNDONE = (
    ExecutionStatus.ROLLING_BACK,
    ExecutionStatus.ROLLED_BACK,
    ExecutionStatus.ROLLBACK_FAILED,
)
_QUEUED = "pending"
_BLOCKED = "blocked"
_RUN = "auto_approved"
# A proposal routed to the queue, whatever became of it there.
_FROM_QUEUE = {
    ProposalStatus.PENDING,
    ProposalStatus.APPROVED,
    ProposalStatus.REJECTED,
    ProposalStatus.EXPIRED,
    ProposalStatus.WITHDRAWN,
}

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson(count: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None without a sample.

    Chosen over the normal approximation because it stays inside 0–1 and is honest for the
    small counts and the proportions near 0 that a shadow's harm usually shows.
    """
    if n <= 0:
        return None
    p = count / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Proportion:
    """`count` of `of`, with its Wilson 95 % interval."""

    count: int
    of: int

    @property
    def value(self) -> float | None:
        return self.count / self.of if self.of else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.count, self.of)

    def __str__(self) -> str:
        if not self.of:
            return f"{self.count} of 0"
        low, high = self.interval or (0.0, 0.0)
        return (
            f"{self.count} of {self.of} ({self.count / self.of * 100:.1f} %, "
            f"95 % CI {low * 100:.1f}–{high * 100:.1f} %)"
        )


def live_outcome(status: str) -> str:
    """What the live policy did with a proposal on arrival, from its status now."""
    return _QUEUED if status in _FROM_QUEUE else status


def category(*, shadow_outcome: str, status: str, execution_status: str | None) -> str:
    """Where one proposal judged by the shadow falls (DEFINITIONS)."""
    live = live_outcome(status)
    if shadow_outcome == live:
        return SAME
    if shadow_outcome == _BLOCKED:
        return WOULD_BLOCK
    if shadow_outcome == _QUEUED:
        return EXTRA_LOAD
    if shadow_outcome == _RUN and live == _QUEUED:
        if status == ProposalStatus.REJECTED:
            return HARM_AVOIDED
        if status == ProposalStatus.APPROVED:
            return HARM_AVOIDED if execution_status in UNDONE else AGREEMENT
        return UNSETTLED  # still pending, expired or withdrawn: no analyst's verdict
    return OTHER


@dataclass(frozen=True)
class Judged:
    """One proposal the shadow judged, as the score reads it."""

    id: object
    action: str
    status: str
    shadow_outcome: str
    execution_status: str | None
    criticality: str
    confidence: float
    seconds_on_card: float | None  # analysts' measured time on it, all decisions together

    @property
    def category(self) -> str:
        return category(
            shadow_outcome=self.shadow_outcome,
            status=self.status,
            execution_status=self.execution_status,
        )


@dataclass
class Tally:
    """Counts of the categories over some of the judged proposals, and their time on card."""

    counts: Counter = field(default_factory=Counter)
    # Measured time on card of the proposals the live policy sent to an analyst and the shadow
    # would not have: the analyst time the shadow would have saved.
    saved_seconds: float = 0.0
    saved_cards: int = 0
    # Measured time on card of every decided proposal, for the estimate of the extra load.
    card_seconds: list[float] = field(default_factory=list)

    def add(self, item: Judged) -> None:
        self.counts[item.category] += 1
        decided = item.status in (ProposalStatus.APPROVED, ProposalStatus.REJECTED)
        if decided and item.seconds_on_card is not None:
            self.card_seconds.append(item.seconds_on_card)
            if item.shadow_outcome != _QUEUED:
                self.saved_seconds += item.seconds_on_card
                self.saved_cards += 1

    @property
    def judged(self) -> int:
        return sum(self.counts.values())

    @property
    def settled(self) -> int:
        """The sample: judged proposals that can be scored (all but the unsettled)."""
        return self.judged - self.counts[UNSETTLED]

    @property
    def would_run_decided(self) -> int:
        return self.counts[AGREEMENT] + self.counts[HARM_AVOIDED]

    @property
    def agreement(self) -> Proportion:
        return Proportion(self.counts[AGREEMENT], self.would_run_decided)

    @property
    def harm_avoided(self) -> Proportion:
        return Proportion(self.counts[HARM_AVOIDED], self.would_run_decided)

    @property
    def extra_load(self) -> Proportion:
        return Proportion(self.counts[EXTRA_LOAD], self.settled)

    @property
    def would_block(self) -> Proportion:
        return Proportion(self.counts[WOULD_BLOCK], self.settled)

    @property
    def median_card_seconds(self) -> float | None:
        return median(self.card_seconds) if self.card_seconds else None

    @property
    def extra_seconds(self) -> float | None:
        """The extra load's analyst time, estimated at the median measured time on card."""
        typical = self.median_card_seconds
        return None if typical is None else self.counts[EXTRA_LOAD] * typical

    @property
    def net_minutes(self) -> float | None:
        """Analyst minutes the shadow would add (positive) or save (negative)."""
        extra = self.extra_seconds
        if extra is None and not self.saved_cards:
            return None
        return ((extra or 0.0) - self.saved_seconds) / 60

    def minutes_text(self) -> str:
        """The analyst time the shadow would add or save, in words, with its parts."""
        net = self.net_minutes
        if net is None:
            return "No measured time on card yet: analyst time cannot be estimated."
        saved = (
            f"{self.saved_seconds / 60:.1f} min measured on the {self.saved_cards} cards it "
            "would not have sent to an analyst"
        )
        typical = self.median_card_seconds
        extra = (
            f"about {self.extra_seconds / 60:.1f} min for its {self.counts[EXTRA_LOAD]} extra "
            f"cards at the median measured {typical:.0f} s a card"
            if typical is not None
            else "no estimate for its extra cards"
        )
        total = (
            f"{net:.1f} analyst minutes more" if net > 0 else f"{-net:.1f} analyst minutes saved"
        )
        return f"{total}: {saved} (saved); {extra}."


@dataclass(frozen=True)
class ShadowScore:
    shadow: Policy
    live: Policy | None
    overall: Tally
    by_action: dict[str, Tally]
    worst: list[tuple[str, Proposal]]  # (category, the proposal with its details)
    min_sample: int

    @property
    def ready(self) -> bool:
        """Whether the sample is big enough to promote on."""
        return self.overall.settled >= self.min_sample


def _judged(shadow: Policy) -> list[Judged]:
    rows = (
        Proposal.objects.filter(shadow_policy=shadow)
        .annotate(card=Sum("decisions__seconds_on_card"))
        .values_list(
            "id",
            "action",
            "status",
            "shadow_outcome",
            "execution__status",
            "criticality",
            "confidence",
            "card",
        )
    )
    return [Judged(*row) for row in rows]


# Worst first: harm the shadow would have done (a rollback before a rejection), then what it
# would have blocked, then the analysts it would have asked needlessly.
_SEVERITY = {HARM_AVOIDED: 0, WOULD_BLOCK: 2, EXTRA_LOAD: 3}


def _worst_key(item: Judged) -> tuple[float, ...]:
    tier = _SEVERITY[item.category]
    if item.category == HARM_AVOIDED and item.execution_status not in UNDONE:
        tier = 1
    return (tier, -ladder.rank(item.criticality), -item.confidence)


def shadow_score(shadow: Policy, *, worst: int = 3) -> ShadowScore:
    """The shadow's score over every proposal it judged, overall and by action, with its
    `worst` cases in full."""
    judged = _judged(shadow)
    overall = Tally()
    by_action: dict[str, Tally] = defaultdict(Tally)
    for item in judged:
        overall.add(item)
        by_action[item.action].add(item)
    picked = sorted((j for j in judged if j.category in _SEVERITY), key=_worst_key)[:worst]
    details = proposals_with_details().in_bulk([j.id for j in picked])
    return ShadowScore(
        shadow=shadow,
        live=shadow.agent.policies.live().first(),
        overall=overall,
        by_action=dict(by_action),
        worst=[(j.category, details[j.id]) for j in picked],
        min_sample=settings.SHADOW_MIN_SAMPLE,
    )


def agent_shadow(agent: Agent) -> Policy | None:
    """The agent's policy in shadow now, with its grants."""
    return agent.policies.shadow().prefetch_related("grants").first()
