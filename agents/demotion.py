"""A grant's demotion rules, and the arithmetic of the failure-rate rule.

What reads the history and demotes lives in approvals.services.demotion; this is the part that
needs no database: the rules as one value, carried from version to version by policy_publish,
and the answer for a list of outcomes, so that a boundary case is a one-line test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .models import (
    DEFAULT_DEMOTE_TO_LEVEL,
    DEFAULT_FAILURE_PERCENT,
    DEFAULT_FAILURE_WINDOW,
    Grant,
)

# The rules' names as audit events (grant.demoted) and pages give them.
FAILURE_RATE = "failure_rate"
OVER_CONFIDENCE = "over_confidence"
AUTOMATIC_ROLLBACK = "automatic_rollback"
RULES = (FAILURE_RATE, OVER_CONFIDENCE, AUTOMATIC_ROLLBACK)


@dataclass(frozen=True)
class DemotionRules:
    to_level: int = DEFAULT_DEMOTE_TO_LEVEL
    # The failure-rate rule: more than `failure_percent` % of the last `failure_window`
    # executions failed or were rolled back. A window of 0 turns it off.
    failure_window: int = DEFAULT_FAILURE_WINDOW
    failure_percent: int = DEFAULT_FAILURE_PERCENT
    over_confidence: bool = True
    automatic_rollback: bool = True

    def grant_fields(self) -> dict[str, Any]:
        """The Grant columns that hold these rules."""
        return {
            "demote_to_level": self.to_level,
            "demote_failure_window": self.failure_window,
            "demote_failure_percent": self.failure_percent,
            "demote_on_over_confidence": self.over_confidence,
            "demote_on_automatic_rollback": self.automatic_rollback,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_RULES = DemotionRules()


def rules_of(grant: Grant) -> DemotionRules:
    return DemotionRules(
        to_level=grant.demote_to_level,
        failure_window=grant.demote_failure_window,
        failure_percent=grant.demote_failure_percent,
        over_confidence=grant.demote_on_over_confidence,
        automatic_rollback=grant.demote_on_automatic_rollback,
    )


def failure_rate_exceeded(bad: int, seen: int, rules: DemotionRules) -> bool:
    """Whether `bad` failed or rolled-back executions among the last `seen` fire the rule.

    Fewer executions than the window never fire it (too little to judge), and exactly the
    share does not: the rule says "more than". Integers only, so 5 of 20 at 25 % is exactly
    the share, not a float a hair above it.
    """
    window = rules.failure_window
    if window <= 0 or seen < window:
        return False
    return bad * 100 > rules.failure_percent * window


def describe(rules: DemotionRules) -> str:
    """The rules in words, for the agents page and the admin's form."""
    parts = []
    if rules.failure_window > 0:
        parts.append(
            f"more than {rules.failure_percent} % of the last {rules.failure_window} "
            "executions failed or rolled back"
        )
    if rules.over_confidence:
        parts.append("a rejection at or above the auto threshold")
    if rules.automatic_rollback:
        parts.append("a rollback of an automatic action")
    if not parts:
        return "no demotion rules"
    return f"to level {rules.to_level} on: " + "; ".join(parts)


def in_words(data: dict[str, Any]) -> str:
    """Why a grant.demoted event's rule fired, in a phrase for notices, pages and mail."""
    evidence = data.get("evidence") or {}
    rule = data.get("rule")
    if rule == AUTOMATIC_ROLLBACK:
        return f"{evidence.get('analyst', 'an analyst')} rolled back an automatic action"
    if rule == OVER_CONFIDENCE:
        return (
            f"{evidence.get('analyst', 'an analyst')} rejected a proposal of confidence "
            f"{evidence.get('confidence')} (auto threshold {evidence.get('auto_threshold')})"
        )
    if rule == FAILURE_RATE:
        return (
            f"{evidence.get('bad')} of its last {evidence.get('window')} executions failed or "
            f"were rolled back (more than {evidence.get('threshold_percent')} %)"
        )
    return str(rule)
