"""The autonomy each agent has today, and the advice on it: what trust judges and what the
what-if replays."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch

from agents import catalogue
from agents.models import Agent, Policy

from .base import (
    AUTO,
    DECIDED,
    DEMOTE_APPROVAL_BELOW,
    DEMOTE_BAD_OUTCOME_ABOVE,
    MIN_SAMPLE,
    PROMOTE_GOOD_SHARE,
    PROMOTE_MIN,
    THRESHOLDS,
    Figure,
    share,
)


def levels() -> dict[tuple[str, str], int]:
    """(agent slug, action) → the grant's level in the agent's live policy."""
    found = {}
    live = Prefetch("policies", queryset=Policy.objects.live().prefetch_related("grants"))
    for agent in Agent.objects.prefetch_related(live):
        policies = list(agent.policies.all())  # the live versions, the deciding one first
        if policies:
            for grant in policies[0].grants.all():
                found[(agent.slug, grant.action)] = grant.level
    return found


def reversible(action: str) -> bool:
    kind = catalogue.get(action)
    return bool(kind and kind.reversible)


def runs_alone(level: int, action: str) -> bool:
    """Whether a grant lets the agent act with no human: the autonomy a demotion takes away.
    Level 3 covers only reversible actions; level 2 never runs anything alone."""
    return level >= 4 or (level == 3 and reversible(action))


def eligible_pairs(scope: str) -> set[tuple[str, str]]:
    """(agent slug, action) pairs that could run without a human under a replayed threshold:
    the grants as they are ("granted"), or every reversible action granted level 2 or more
    as if level 3 ("reversible")."""
    return {
        (slug, action)
        for (slug, action), level in levels().items()
        if (scope == "reversible" and level >= 2 and reversible(action))
        or runs_alone(level, action)
    }


@dataclass(frozen=True)
class Advice:
    kind: str  # "promote", "demote", "not ready", "hold" or "thin" (not enough data)
    text: str


@dataclass
class TrustRow:
    agent: str
    action: str
    level: int
    proposals: int
    decided: int
    approved: int
    auto: int
    executed: int
    failed: int
    undone: int
    auto_executed: int  # automatic runs whose execution finished
    auto_bad: int  # of those, failed or rolled back
    # threshold -> (decided by analysts on non-critical targets at or above it, good outcomes):
    # the proposals level 3 at that threshold would have run alone.
    scan: dict[float, tuple[int, int]]

    @property
    def approval_rate(self) -> Figure:
        return share(self.approved, self.decided)

    @property
    def failure_rate(self) -> Figure:
        return share(self.failed, self.executed)

    @property
    def rollback_rate(self) -> Figure:
        return share(self.undone, self.executed)

    @property
    def auto_bad_rate(self) -> Figure:
        return share(self.auto_bad, self.auto_executed)

    def recommendation(self) -> str:
        return self.advice().text

    def advice(self) -> Advice:
        """Promote, demote or hold, each judged on the proposals that change would affect."""
        judged = self.decided + self.auto
        if judged < MIN_SAMPLE:
            return Advice(
                "thin", f"not enough data ({judged} {DECIDED} or {AUTO}, {MIN_SAMPLE} needed)"
            )
        if runs_alone(self.level, self.action):
            return self._advice_on_automatic_runs()
        promotion = self._promotion()
        if promotion is not None:
            return promotion
        weak = self._weaknesses()
        if weak and self.level >= 2:
            return Advice(
                "not ready", f"keep level {self.level}, not ready for more: " + "; ".join(weak)
            )
        if self.level == 2 and reversible(self.action):
            return Advice(
                "hold",
                f"keep level 2: no confidence threshold gives {PROMOTE_MIN}+ proposals "
                f"{DECIDED} on non-critical targets with {PROMOTE_GOOD_SHARE * 100:.0f}% good "
                "outcomes",
            )
        if self.level in (2, 3):
            return Advice(
                "hold",
                f"keep level {self.level}: an irreversible action always needs an analyst below "
                "level 4",
            )
        return Advice("hold", f"keep level {self.level}")

    def _advice_on_automatic_runs(self) -> Advice:
        # Demoting to level 2 sends exactly the automatic runs to an analyst: judge those.
        if self.auto_executed < MIN_SAMPLE:
            return Advice(
                "hold",
                f"keep level {self.level}: {self.auto_executed} automatic runs finished, "
                f"too few to judge ({MIN_SAMPLE} needed)",
            )
        record = (
            f"{self.auto_bad} of {self.auto_executed} automatic runs "
            f"({self.auto_bad_rate}) failed or were rolled back"
        )
        if self.auto_bad / self.auto_executed > DEMOTE_BAD_OUTCOME_ABOVE:
            return Advice("demote", f"demote to level 2: {record}")
        return Advice("hold", f"keep level {self.level}: {record}")

    def _promotion(self) -> Advice | None:
        if not (self.level == 2 and reversible(self.action)):
            return None
        for x in THRESHOLDS:
            n, good = self.scan.get(x, (0, 0))
            if n >= PROMOTE_MIN and good / n >= PROMOTE_GOOD_SHARE:
                return Advice(
                    "promote",
                    f"promote to level 3 at threshold {x:.2f}: {good} of {n} proposals "
                    f"{DECIDED} at or above {x:.2f} on non-critical targets "
                    f"({good / n * 100:.0f}%) were approved and not rolled back or failed",
                )
        return None

    def _weaknesses(self) -> list[str]:
        weak = []
        rate = self.approval_rate.value
        if rate is not None and rate < DEMOTE_APPROVAL_BELOW:
            weak.append(f"analysts approved only {self.approval_rate} of {self.decided}")
        if self.executed >= MIN_SAMPLE and (
            (self.failed + self.undone) / self.executed > DEMOTE_BAD_OUTCOME_ABOVE
        ):
            bad = (self.failed + self.undone) / self.executed
            weak.append(
                f"{bad * 100:.0f}% of {self.executed} executions failed or were rolled back"
            )
        return weak
