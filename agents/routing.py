"""Guardrail routing: what may happen to a proposal.

Its result is a `RoutingOutcome`, never called a decision: a decision is an analyst's verdict.

A pure function of its inputs, so that its invariants can be stated and property-tested
without a database: the services gather the inputs, call `route`, and record the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

CRITICAL = "critical"


class Outcome(StrEnum):
    BLOCKED = "blocked"
    ADVISORY = "advisory"
    FLAGGED = "flagged"
    PENDING = "pending"
    AUTO_APPROVED = "auto_approved"


class BlockCode(StrEnum):
    AGENT_SUSPENDED = "agent_suspended"
    EMERGENCY_STOP = "emergency_stop"
    ACTION_NOT_PERMITTED = "action_not_permitted"
    TARGET_OUT_OF_SCOPE = "target_out_of_scope"
    EVIDENCE_REQUIRED = "evidence_required"


class QueueCode(StrEnum):
    """Why a proposal that would have run at once waits for a human instead."""

    BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True)
class RoutingInput:
    level: int  # the grant's autonomy level for this action, 0 when there is no grant
    confidence: float
    auto_threshold: float
    review_threshold: float
    reversible: bool
    criticality: str  # of the target asset: low, medium, high, critical
    in_scope: bool  # target within the policy's asset scope
    connector_allowed: bool  # the action's connector is among the policy's tools
    evidence_complete: bool  # carries every evidence kind the policy requires
    emergency_stop: bool
    suspended: bool
    # The grant's blast-radius budget for the last hour is spent (automatic executions, or
    # distinct targets with this one new). Known only when it matters: see `needs_budget`.
    budget_exhausted: bool = False


@dataclass(frozen=True)
class RoutingOutcome:
    outcome: Outcome
    code: BlockCode | QueueCode | None = None
    required_approvals: int = 0
    explanation: str = ""


def route(given: RoutingInput) -> RoutingOutcome:
    """The first step that settles the proposal gives the outcome, in this order: the refusals,
    then the outcomes that never execute, then what the grant's level allows."""
    return _refusal(given) or _not_executed(given) or _by_level(given)


def _refusal(given: RoutingInput) -> RoutingOutcome | None:
    """Blocked, by the first refusal that applies, in the order listed."""
    refusals = (
        (given.suspended, BlockCode.AGENT_SUSPENDED, "the agent is suspended"),
        (
            given.emergency_stop,
            BlockCode.EMERGENCY_STOP,
            "the emergency stop is engaged: no agent proposals are accepted",
        ),
        (
            given.level <= 0,
            BlockCode.ACTION_NOT_PERMITTED,
            "the policy does not grant this action (level 0, manual only)",
        ),
        (
            not given.connector_allowed,
            BlockCode.ACTION_NOT_PERMITTED,
            "the policy does not allow the connector this action runs through",
        ),
        (
            not given.in_scope,
            BlockCode.TARGET_OUT_OF_SCOPE,
            "the target is outside the policy's asset scope",
        ),
        (
            not given.evidence_complete,
            BlockCode.EVIDENCE_REQUIRED,
            "the proposal lacks evidence the policy requires",
        ),
    )
    for applies, code, explanation in refusals:
        if applies:
            return RoutingOutcome(Outcome.BLOCKED, code, 0, explanation)
    return None


def _not_executed(given: RoutingInput) -> RoutingOutcome | None:
    """Advisory at level 1; flagged for tuning below the review threshold."""
    if given.level == 1:
        return RoutingOutcome(Outcome.ADVISORY, None, 0, "advisory only (level 1): never executed")
    if given.confidence < given.review_threshold:
        return RoutingOutcome(
            Outcome.FLAGGED,
            None,
            0,
            f"confidence {given.confidence:.2f} is below the review threshold "
            f"{given.review_threshold:.2f}: flagged for tuning review",
        )
    return None


def _by_level(given: RoutingInput) -> RoutingOutcome:
    """Level 2 and up: runs at once when the level's conditions are met and the budget allows,
    otherwise waits for one approver, or two for a critical asset."""
    critical = given.criticality == CRITICAL
    required = 2 if critical else 1
    confident = given.confidence >= given.auto_threshold
    automatic = (
        confident and not critical and (given.level >= 4 or (given.level == 3 and given.reversible))
    )
    if automatic and given.budget_exhausted:
        return RoutingOutcome(
            Outcome.PENDING,
            QueueCode.BUDGET_EXHAUSTED,
            required,
            "budget_exhausted: the grant's blast-radius budget for the hour is spent, "
            "so a human decides",
        )
    if given.level == 3 and automatic:
        return RoutingOutcome(
            Outcome.AUTO_APPROVED, None, 0, "level 3 conditions met: runs at once"
        )
    if given.level >= 4 and automatic:
        return RoutingOutcome(
            Outcome.AUTO_APPROVED, None, 0, "level 4 conditions met: runs at once, reviewed after"
        )
    return RoutingOutcome(
        Outcome.PENDING, None, required, _why_a_human(given, confident=confident, critical=critical)
    )


def _why_a_human(given: RoutingInput, *, confident: bool, critical: bool) -> str:
    reasons = []
    if given.level == 2:
        reasons.append("level 2 needs a human")
    else:
        if not confident:
            reasons.append(f"confidence below the auto threshold {given.auto_threshold:.2f}")
        if given.level == 3 and not given.reversible:
            reasons.append("irreversible action")
        if critical:
            reasons.append("critical asset: two approvers")
    return "; ".join(reasons) or "needs a human"


def needs_budget(outcome: RoutingOutcome) -> bool:
    """Whether the budget can change this outcome: only a proposal that would run at once
    asks it, so that every other proposal skips the count."""
    return outcome.outcome is Outcome.AUTO_APPROVED
