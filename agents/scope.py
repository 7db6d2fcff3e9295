"""What an agent's policy admits for a proposal: the routing inputs read from agents' data.

The submission service asks these before it calls `routing.route`: the target's canonical
identity, whether the inventory assets it may be lie within the policy's scope, whether the
action's connector and the evidence given satisfy the policy. Everything here reads only the
agent, its policy, the catalogue and the inventory; the outcome is recorded by approvals.
"""

from __future__ import annotations

from collections.abc import Iterable

from soc_console.errors import InvalidInput

from . import catalogue, targets
from .models import Policy
from .routing import RoutingInput
from .selectors import InventoryMatch, RoutingContext


def target_identity(kind: catalogue.ActionType, target: str) -> targets.Identity:
    """The target's one identity, or a 400 naming the field."""
    try:
        return kind.clean_target(target)
    except targets.TargetError as exc:
        message = f"For {kind.name} the target {exc}."
        raise InvalidInput(message, errors={"target": [message]}) from exc


def in_scope(policy: Policy, match: InventoryMatch) -> bool:
    """Whether the policy's asset scope admits every asset the target may be (fail closed):
    what it may be beyond the inventory counts at its rating and belongs to no group."""
    if policy.scope_tiers:
        tiers = {a.criticality for a in match.assets} | {match.criticality}
        if match.beyond is not None:
            tiers.add(match.beyond)
        if not tiers <= set(policy.scope_tiers):
            return False
    if policy.scope_groups:
        groups = {a.group for a in match.assets}
        if not groups or match.beyond is not None or not groups <= set(policy.scope_groups):
            return False
    return True


def routing_input(
    context: RoutingContext,
    *,
    kind: catalogue.ActionType,
    match: InventoryMatch,
    confidence: float,
    evidence_kinds: Iterable[str],
) -> RoutingInput:
    """The inputs of `routing.route` for this proposal under the agent's current policy.

    Without a policy nothing is granted: level 0 and thresholds no confidence reaches.
    """
    policy = context.policy
    if policy is None:
        return RoutingInput(
            level=0,
            confidence=confidence,
            auto_threshold=1.0,
            review_threshold=1.0,
            reversible=kind.reversible,
            criticality=match.criticality,
            in_scope=True,
            connector_allowed=True,
            evidence_complete=True,
            emergency_stop=context.emergency_stop,
            suspended=context.agent.suspended,
        )
    return RoutingInput(
        level=policy.level_for(kind.name),
        confidence=confidence,
        auto_threshold=policy.auto_threshold,
        review_threshold=policy.review_threshold,
        reversible=kind.reversible,
        criticality=match.criticality,
        in_scope=in_scope(policy, match),
        connector_allowed=not policy.allowed_connectors
        or kind.connector in policy.allowed_connectors,
        evidence_complete=set(policy.required_evidence) <= set(evidence_kinds),
        emergency_stop=context.emergency_stop,
        suspended=context.agent.suspended,
    )
