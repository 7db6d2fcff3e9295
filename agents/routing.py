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
    if given.suspended:
        return RoutingOutcome(
            Outcome.BLOCKED, BlockCode.AGENT_SUSPENDED, 0, "the agent is suspended"
        )
    if given.emergency_stop:
        return RoutingOutcome(
            Outcome.BLOCKED,
            BlockCode.EMERGENCY_STOP,
            0,
            "the emergency stop is engaged: no agent proposals are accepted",
        )
    if given.level <= 0:
        return RoutingOutcome(
            Outcome.BLOCKED,
            BlockCode.ACTION_NOT_PERMITTED,
            0,
            "the policy does not grant this action (level 0, manual only)",
        )
    if not given.connector_allowed:
        return RoutingOutcome(
            Outcome.BLOCKED,
            BlockCode.ACTION_NOT_PERMITTED,
            0,
            "the policy does not allow the connector this action runs through",
        )
    if not given.in_scope:
        return RoutingOutcome(
            Outcome.BLOCKED,
            BlockCode.TARGET_OUT_OF_SCOPE,
            0,
            "the target is outside the policy's asset scope",
        )
    if not given.evidence_complete:
        return RoutingOutcome(
            Outcome.BLOCKED,
            BlockCode.EVIDENCE_REQUIRED,
            0,
            "the proposal lacks evidence the policy requires",
        )
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
    return RoutingOutcome(Outcome.PENDING, None, required, "; ".join(reasons) or "needs a human")


def needs_budget(outcome: RoutingOutcome) -> bool:
    """Whether the budget can change this outcome: only a proposal that would run at once
    asks it, so that every other proposal skips the count."""
    return outcome.outcome is Outcome.AUTO_APPROVED
