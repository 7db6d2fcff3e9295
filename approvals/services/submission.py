"""A proposal's submission: judged under the agent's current policy, recorded with its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import catalogue, scope, targets
from agents.models import Agent, ApiKey
from agents.routing import RoutingOutcome, route
from agents.selectors import InventoryMatch, RoutingContext, inventory_match, routing_context
from audit import log
from soc_console.errors import IdempotencyConflict

from .. import sql
from ..models import Proposal, ProposalStatus
from ..priority import priority_key
from .shared import callback, execution_create, publish_committed


@dataclass(frozen=True)
class Submission:
    proposal: Proposal
    created: bool


@dataclass(frozen=True)
class _Proposed:
    """A validated proposal as the agent sent it, with its target's identity."""

    agent: Agent
    api_key: ApiKey | None
    kind: catalogue.ActionType
    target: str
    identity: targets.Identity
    params: dict[str, Any]
    confidence: float
    rationale: str
    evidence: list[dict[str, Any]]
    severity: str
    idempotency_key: str | None
    request_hash: str


def proposal_submit(
    *,
    agent: Agent,
    api_key: ApiKey | None,
    action: str,
    target: str,
    params: dict[str, Any],
    confidence: float,
    rationale: str,
    evidence: list[dict[str, Any]],
    severity: str,
    idempotency_key: str | None,
    request_hash: str,
    identity: targets.Identity | None = None,
) -> Submission:
    """Judge a validated proposal under the agent's current policy and record the outcome.

    The target is kept as written and judged by its canonical identity, which `identity`
    gives when the caller has computed it already (the API does, to validate and to hash).
    A replay with the same idempotency key and body returns the first proposal unchanged.
    """
    kind = catalogue.get(action)
    if kind is None:
        raise ValueError(f"unknown action {action!r}")  # the API validated it already
    proposed = _Proposed(
        agent=agent,
        api_key=api_key,
        kind=kind,
        target=target,
        identity=identity if identity is not None else scope.target_identity(kind, target),
        params=params,
        confidence=confidence,
        rationale=rationale,
        evidence=evidence,
        severity=severity,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    # A replay is rare: insert first and let the unique (agent, key) constraint catch it,
    # rather than spend a look-up on every first submission.
    try:
        with transaction.atomic():
            proposal = _record_submission(proposed)
    except IntegrityError:
        # The key was used before (a replay, or two requests racing): the first proposal is
        # the answer, or a 409 when the bodies differ.
        if not idempotency_key:
            raise
        existing = _replay(agent, idempotency_key, request_hash)
        if existing is None:
            raise
        return Submission(existing, created=False)
    return Submission(proposal, created=True)


def _replay(agent: Agent, key: str, request_hash: str) -> Proposal | None:
    existing = Proposal.objects.filter(agent=agent, idempotency_key=key).first()
    if existing is not None and existing.request_hash != request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used for proposal {existing.id} with a "
            "different body. Use a new key for a new proposal."
        )
    return existing


def _record_submission(proposed: _Proposed) -> Proposal:
    now = timezone.now()
    context = routing_context(proposed.agent.pk)  # fresh: suspension and policy may have changed
    match = inventory_match(proposed.identity)
    routed = route(
        scope.routing_input(
            context,
            kind=proposed.kind,
            match=match,
            confidence=proposed.confidence,
            evidence_kinds={str(item.get("kind")) for item in proposed.evidence},
        )
    )
    proposal = _new_proposal(proposed, context, match, routed, now)
    proposal.save(force_insert=True)
    # A new proposal has no decisions yet; readers of the returned row need no query for that.
    sql.no_decisions_yet(proposal)
    data = _submitted_data(proposed, context, proposal)
    if proposal.status == ProposalStatus.AUTO_APPROVED:
        execution = execution_create(proposal, now)  # also caches proposal.execution
        data["execution"] = str(execution.id)
        callback(proposal.id, "decided", agent=context.agent)
    else:
        sql.no_execution_yet(proposal)  # none exists yet
    log.record(
        event_type="proposal.submitted",
        actor=context.agent.slug,
        actor_type="agent",
        proposal_id=proposal.id,
        data=data,
    )
    if proposal.status in (ProposalStatus.PENDING, ProposalStatus.AUTO_APPROVED):
        publish_committed(proposal)
    return proposal


def _new_proposal(
    proposed: _Proposed,
    context: RoutingContext,
    match: InventoryMatch,
    routed: RoutingOutcome,
    now: datetime,
) -> Proposal:
    """The proposal's row, not yet saved, with the routing outcome and its deadlines."""
    policy, kind = context.policy, proposed.kind
    status = ProposalStatus(routed.outcome.value)
    proposal = Proposal(
        agent=context.agent,
        api_key=proposed.api_key,
        action=kind.name,
        target=proposed.target,
        target_canonical=proposed.identity.value,
        params=proposed.params,
        confidence=proposed.confidence,
        rationale=proposed.rationale,
        evidence=proposed.evidence,
        severity=proposed.severity,
        status=status,
        block_code=routed.code.value if routed.code else "",
        routing_explanation=routed.explanation[:300],
        required_approvals=routed.required_approvals,
        policy=policy,
        policy_version=policy.version if policy else None,
        asset=match.asset,
        criticality=match.criticality,
        risk=kind.risk,
        priority=priority_key(
            risk=kind.risk,
            criticality=match.criticality,
            confidence=proposed.confidence,
            created_at=now,
        ),
        idempotency_key=proposed.idempotency_key,
        request_hash=proposed.request_hash,
        created_at=now,
    )
    if status == ProposalStatus.PENDING and policy is not None:
        proposal.escalate_at = now + timedelta(minutes=policy.escalate_after_minutes)
        proposal.expires_at = now + timedelta(minutes=policy.expire_after_minutes)
    if status == ProposalStatus.AUTO_APPROVED:
        proposal.decided_at = now
    return proposal


def _submitted_data(
    proposed: _Proposed, context: RoutingContext, proposal: Proposal
) -> dict[str, Any]:
    """The proposal.submitted event's data."""
    data: dict[str, Any] = {
        "agent": context.agent.slug,
        "action": proposed.kind.name,
        "target": proposed.target,
        "target_canonical": proposed.identity.value,
        "confidence": proposed.confidence,
        "status": proposal.status.value,
        "policy_version": proposal.policy_version,
        "asset": proposal.asset.identifier if proposal.asset else None,
        "criticality": proposal.criticality,
        "explanation": proposal.routing_explanation,
    }
    if proposal.block_code:
        data["code"] = proposal.block_code
    return data
