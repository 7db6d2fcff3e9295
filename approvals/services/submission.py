"""A proposal's submission: judged under the agent's current policy, recorded with its outcome."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import catalogue, scope, targets
from agents.models import Agent, ApiKey, Policy
from agents.routing import RoutingInput, RoutingOutcome, needs_budget, route
from agents.selectors import InventoryMatch, RoutingContext, inventory_match, routing_context
from audit import events, log
from soc_console.errors import IdempotencyConflict

from .. import sql
from ..models import Execution, Proposal, ProposalStatus
from ..priority import placed
from .holds import agent_suspend_by_breaker
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
    earlier_hashes: tuple[str, ...] = (),
) -> Submission:
    """Judge a validated proposal under the agent's current policy and record the outcome.

    The target is kept as written and judged by its canonical identity, which `identity`
    gives when the caller has computed it already (the API does, to validate and to hash).
    A replay with the same idempotency key and body returns the first proposal unchanged; its
    first submission's stored hash is `request_hash` or one of `earlier_hashes` (what earlier
    versions of the API hashed).
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
        existing = _replay(agent, idempotency_key, (request_hash, *earlier_hashes))
        if existing is None:
            raise
        return Submission(existing, created=False)
    return Submission(proposal, created=True)


def _replay(agent: Agent, key: str, hashes: tuple[str, ...]) -> Proposal | None:
    existing = Proposal.objects.filter(agent=agent, idempotency_key=key).first()
    if existing is not None and existing.request_hash not in hashes:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used for proposal {existing.id} with a "
            "different body. Use a new key for a new proposal."
        )
    return existing


def _record_submission(proposed: _Proposed) -> Proposal:
    now = timezone.now()
    context = routing_context(proposed.agent.pk)  # fresh: suspension and policy may have changed
    context = _circuit_breaker(context, now)
    match = inventory_match(proposed.identity)
    given = scope.routing_input(
        context,
        kind=proposed.kind,
        match=match,
        confidence=proposed.confidence,
        evidence_kinds={str(item.get("kind")) for item in proposed.evidence},
    )
    spent = _Spent(context.agent.pk, proposed, now)
    routed = _route_with_budget(context.policy, given, spent, lock=True)
    shadow_routed = None
    if context.shadow is not None:
        # The same proposal under the shadow version: recorded, never acted on. Its inputs
        # come from the context already read; at most the budget's count is asked (once).
        shadow_given = scope.routing_input(
            replace(context, policy=context.shadow),
            kind=proposed.kind,
            match=match,
            confidence=proposed.confidence,
            evidence_kinds={str(item.get("kind")) for item in proposed.evidence},
        )
        shadow_routed = _route_with_budget(context.shadow, shadow_given, spent, lock=False)
    proposal = _new_proposal(proposed, context, match, routed, now)
    if shadow_routed is not None:
        proposal.shadow_policy = context.shadow
        proposal.shadow_version = context.shadow.version
        proposal.shadow_outcome = shadow_routed.outcome.value
        proposal.shadow_code = shadow_routed.code.value if shadow_routed.code else ""
        proposal.shadow_explanation = shadow_routed.explanation[:300]
    proposal.save(force_insert=True)
    # A new proposal has no decisions yet; readers of the returned row need no query for that.
    sql.no_decisions_yet(proposal)
    execution = None
    if proposal.status == ProposalStatus.AUTO_APPROVED:
        execution = execution_create(proposal, now)  # also caches proposal.execution
        callback(proposal.id, "decided", agent=context.agent)
    else:
        sql.no_execution_yet(proposal)  # none exists yet
    data = submitted_data(proposal, execution)
    log.record(
        event_type=events.SUBMITTED,
        actor=context.agent.slug,
        actor_type="agent",
        proposal_id=proposal.id,
        data=data,
    )
    if proposal.status in (ProposalStatus.PENDING, ProposalStatus.AUTO_APPROVED):
        publish_committed(proposal)
    return proposal


def _circuit_breaker(context: RoutingContext, now: datetime) -> RoutingContext:
    """Suspend an agent that is at one of its policy's limits (breaker_limit): this proposal,
    the one over the limit, is then routed as any suspended agent's is (blocked, 403
    `agent_suspended`).

    Concurrent submissions may each see the last free place, so the limit can be passed by as
    many proposals as arrive in the same instant; the suspension itself happens once.
    """
    policy = context.policy
    if policy is None or context.agent.suspended:
        return context
    reached = breaker_limit(context.agent.pk, policy, now)
    if reached is None:
        return context
    agent_suspend_by_breaker(agent=context.agent, reason=reached.reason, limit=reached.limit)
    # Suspended now (by this submission or, a moment earlier, by a concurrent one).
    return replace(context, agent=Agent.objects.get(pk=context.agent.pk))


@dataclass(frozen=True)
class BreakerLimit:
    """A circuit-breaker limit an agent is at: `limit` as the suspension's event records it
    (which limit, allowed, seen), `reason` in words."""

    limit: dict[str, Any]
    reason: str


def breaker_limit(agent_id: int, policy: Policy, now: datetime) -> BreakerLimit | None:
    """Which limit of the circuit breaker the agent is at now, if any: its policy's
    `max_pending` proposals open, or `max_proposals_per_minute` sent in the last minute. Its
    next proposal suspends it. Read by each submission and by a resume, which warns.

    One statement of two bounded index scans (approvals.sql.breaker_counts), and none for a
    limit larger than the proposals table could hold."""
    open_count, recent = sql.breaker_counts(
        agent_id,
        since=now - timedelta(minutes=1),
        max_pending=policy.max_pending,
        max_per_minute=policy.max_proposals_per_minute,
    )
    # A count not taken (None) is one the table is too small to bring to its limit.
    if open_count is not None and open_count >= policy.max_pending:
        return BreakerLimit(
            {"limit": "max_pending", "allowed": policy.max_pending, "seen": open_count},
            f"circuit breaker: {open_count} proposals already open, the limit "
            f"(max_pending) is {policy.max_pending}",
        )
    if recent is not None and recent >= policy.max_proposals_per_minute:
        return BreakerLimit(
            {
                "limit": "max_proposals_per_minute",
                "allowed": policy.max_proposals_per_minute,
                "seen": recent,
            },
            f"circuit breaker: {recent} proposals in the last minute, the limit "
            f"(max_proposals_per_minute) is {policy.max_proposals_per_minute}",
        )
    return None


class _Spent:
    """The agent's spent budget for this proposal's action, counted at most once per
    submission: the live policy and the shadow share the count."""

    def __init__(self, agent_id: int, proposed: _Proposed, now: datetime) -> None:
        self.agent_id, self.proposed, self.now = agent_id, proposed, now
        self.counted: sql.BudgetSpent | None = None
        self.locked = False

    def get(self, *, lock: bool) -> sql.BudgetSpent:
        if self.counted is None or (lock and not self.locked):
            self.counted = sql.budget_spent(
                self.agent_id,
                self.proposed.kind.name,
                self.proposed.identity.value,
                since=self.now - timedelta(hours=1),
                lock=lock,
            )
            self.locked = lock
        return self.counted


def _route_with_budget(
    policy: Policy | None, given: RoutingInput, spent: _Spent, *, lock: bool
) -> RoutingOutcome:
    """The routing outcome under a policy, its blast-radius budget included."""
    routed = route(given)
    if needs_budget(routed):
        # Only what would run at once asks the budget: every other proposal skips the count.
        exhausted = _budget_exhausted(policy, spent, lock=lock)
        if exhausted:
            routed = route(replace(given, budget_exhausted=True))
            routed = replace(routed, explanation=f"{routed.explanation} ({exhausted})")
    return routed


def _budget_exhausted(policy: Policy | None, spent_budget: _Spent, *, lock: bool) -> str:
    """Why the grant's blast-radius budget for the last hour admits no automatic execution of
    this proposal, or "" when it does."""
    action = spent_budget.proposed.kind.name
    grant = next((g for g in policy.grants.all() if g.action == action), None) if policy else None
    if grant is None:
        return ""
    spent = spent_budget.get(lock=lock)
    if spent.executions >= grant.max_auto_per_hour:
        return (
            f"{spent.executions} automatic executions of {grant.action} in the last hour, "
            f"the limit is {grant.max_auto_per_hour}"
        )
    if not spent.target_seen and spent.targets >= grant.max_targets_per_hour:
        return (
            f"{spent.targets} distinct targets of {grant.action} in the last hour, "
            f"the limit is {grant.max_targets_per_hour}"
        )
    return ""


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
        **placed(
            risk=kind.risk,
            criticality=match.criticality,
            confidence=proposed.confidence,
            created_at=now,
        ),
        idempotency_key=proposed.idempotency_key,
        request_hash=proposed.request_hash,
    )
    if status == ProposalStatus.PENDING and policy is not None:
        proposal.escalate_at, proposal.expires_at = policy.deadlines(now)
    if status == ProposalStatus.AUTO_APPROVED:
        proposal.decided_at = now
    return proposal


def submitted_data(proposal: Proposal, execution: Execution | None = None) -> dict[str, Any]:
    """The proposal.submitted event's data, read from the proposal's row (as generated history
    builds it): an agent's submission records it, and so does an attention check's insertion."""
    return events.submitted(
        agent=proposal.agent.slug,
        action=proposal.action,
        target=proposal.target,
        target_canonical=proposal.target_canonical,
        confidence=proposal.confidence,
        status=proposal.status,
        policy_version=proposal.policy_version,
        asset=proposal.asset.identifier if proposal.asset else None,
        criticality=proposal.criticality,
        explanation=proposal.routing_explanation,
        code=proposal.block_code,
        execution=execution.id if execution is not None else None,
        shadow=events.shadow_judgement(
            version=proposal.shadow_version,
            outcome=proposal.shadow_outcome,
            code=proposal.shadow_code,
            explanation=proposal.shadow_explanation,
        ),
    )
