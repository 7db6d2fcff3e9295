"""Automatic demotion: a grant that stops deserving its autonomy loses it at once.

Three rules, each a grant's own (agents.demotion): more than X % of the last K executions of
the action failed or were rolled back; an analyst rejected a proposal whose confidence was at
or above the auto threshold (over-confidence); an analyst rolled back an automatic action.
When one fires, in the transaction of the event that fired it, a new live policy version drops
the grant to its `demote_to_level` (never raises it), the grant's queued automatic executions
are held for an analyst, a `grant.demoted` event records the evidence, and on commit the
consoles show a notice and the managers get a mail. Promotion back is a manager's act.

Ordering against the workers: the execution claim takes the emergency-stop row's lock and then
checks, in its compare-and-set, that an automatic approval's grant still has the level it was
approved at (approvals.sql). A demotion takes the same lock before its transaction writes any
audit event (the claim takes the audit chain's lock after the stop row's: the same order here
keeps the two from waiting on each other), so each claim either committed before the demotion
or sees the new version. Hence the two halves of every trigger: `*_firing` reads the history
and, when a rule fires, takes the lock, before the triggering event is recorded;
`grant_demote` publishes after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q

from agents import demotion as rules
from agents.models import Agent, Grant, Policy
from agents.selectors import policy_version, routing_context
from agents.services import policy_publish
from audit import log

from .. import live, notify, sql
from ..models import Execution, ExecutionStatus, Proposal, ProposalStatus
from .holds import hold
from .shared import SYSTEM, after_commit

DEMOTED = "grant.demoted"
HOLD_WHY = "grant demoted"

# An execution that has an outcome, and the outcomes the failure-rate rule counts against it.
SETTLED = (
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.ROLLING_BACK,
    ExecutionStatus.ROLLED_BACK,
    ExecutionStatus.ROLLBACK_FAILED,
)
BAD = (
    ExecutionStatus.FAILED,
    ExecutionStatus.ROLLING_BACK,
    ExecutionStatus.ROLLED_BACK,
    ExecutionStatus.ROLLBACK_FAILED,
)


@dataclass(frozen=True)
class Firing:
    """A rule that fired: which grant, from and to which level, why, and the evidence."""

    agent_id: int
    agent: str
    action: str
    rule: str
    from_level: int
    to_level: int
    evidence: dict[str, Any] = field(default_factory=dict)


def _live_grant(agent_id: int, action: str) -> tuple[Policy, Grant] | None:
    """The live policy and its grant of the action (cached versions: one statement)."""
    policy = routing_context(agent_id).policy
    if policy is None:
        return None
    grant = next((g for g in policy.grants.all() if g.action == action), None)
    return None if grant is None else (policy, grant)


@dataclass(frozen=True)
class _Demotable:
    """The live policy's grant of an action, with the rules that may lower it."""

    policy: Policy
    grant: Grant
    grant_rules: rules.DemotionRules

    def fire(self, proposal: Proposal, *, rule: str, evidence: dict[str, Any]) -> Firing:
        """The firing of `rule` against this grant; takes the stop row's lock now, before the
        trigger records its event (see above)."""
        firing = Firing(
            agent_id=proposal.agent_id,
            agent=_slug(proposal),
            action=proposal.action,
            rule=rule,
            from_level=self.grant.level,
            to_level=self.grant_rules.to_level,
            evidence=evidence,
        )
        sql.stop_engaged_locked()
        return firing


def _demotable(agent_id: int, action: str) -> _Demotable | None:
    """The live grant and its rules when a demotion would lower it; None otherwise."""
    live_grant = _live_grant(agent_id, action)
    if live_grant is None:
        return None
    policy, grant = live_grant
    grant_rules = rules.rules_of(grant)
    if grant.level <= grant_rules.to_level:
        return None  # demotion only ever lowers a grant
    return _Demotable(policy, grant, grant_rules)


def approved_level(proposal: Proposal) -> int:
    """The level the policy that routed the proposal gave its action."""
    if proposal.policy_id is None:
        return 0
    return policy_version(proposal.policy_id).level_for(proposal.action)


def demoted_since_approval(proposal: Proposal) -> bool:
    """An automatic approval, not confirmed by an analyst since, whose grant the live policy no
    longer gives the level it was approved at: the claim's condition (approvals.sql), in
    Python, for saying why a claim lost."""
    if proposal.status != ProposalStatus.AUTO_APPROVED or proposal.reviewed_at is not None:
        return False
    live_grant = _live_grant(proposal.agent_id, proposal.action)
    live_level = live_grant[1].level if live_grant else 0
    return live_level < approved_level(proposal)


# --- the rules --------------------------------------------------------------------------------


def failure_window(
    agent_id: int, action: str, *, window: int, including: Any = None
) -> list[tuple[str, str, str]]:
    """The agent's last `window` executions of the action that have an outcome (and
    `including`, whatever its status), newest approval first: (id, status, proposal status)."""
    counted = Q(status__in=SETTLED)
    if including is not None:
        counted |= Q(pk=including)
    found = (
        Execution.objects.filter(counted, proposal__agent_id=agent_id, proposal__action=action)
        .order_by("-created_at", "-pk")
        .values_list("pk", "status", "proposal__status")[:window]
    )
    return [(str(pk), status, proposal_status) for pk, status, proposal_status in found]


def failure_rate_firing(execution: Execution, *, becomes: str) -> Firing | None:
    """Whether the execution, about to become `becomes` (failed, rolling back), fires the
    failure-rate rule: more than X % of the last K executions with an outcome are bad."""
    proposal = execution.proposal
    demotable = _demotable(proposal.agent_id, proposal.action)
    if demotable is None:
        return None
    grant_rules = demotable.grant_rules
    if grant_rules.failure_window <= 0:
        return None
    this = str(execution.pk)
    # The history as it stands once this transaction commits: this one with its new outcome.
    window = [
        (pk, becomes if pk == this else status, proposal_status)
        for pk, status, proposal_status in failure_window(
            proposal.agent_id,
            proposal.action,
            window=grant_rules.failure_window,
            including=execution.pk,
        )
    ]
    bad = [(pk, proposal_status) for pk, status, proposal_status in window if status in BAD]
    if not rules.failure_rate_exceeded(bad=len(bad), seen=len(window), rules=grant_rules):
        return None
    return demotable.fire(
        proposal,
        rule=rules.FAILURE_RATE,
        evidence={
            "execution": this,
            "proposal": str(proposal.pk),
            "outcome": str(becomes),
            "window": grant_rules.failure_window,
            "threshold_percent": grant_rules.failure_percent,
            "executions": [pk for pk, _, _ in window],
            "bad_executions": [pk for pk, _ in bad],
            "bad": len(bad),
            "automatic_bad": sum(1 for _, status in bad if status == ProposalStatus.AUTO_APPROVED),
        },
    )


def over_confidence_firing(proposal: Proposal, *, analyst: str, reason: str) -> Firing | None:
    """An analyst is rejecting a proposal whose confidence was at or above the live policy's
    auto threshold: the agent was sure and wrong."""
    demotable = _demotable(proposal.agent_id, proposal.action)
    if demotable is None or not demotable.grant_rules.over_confidence:
        return None
    auto_threshold = demotable.policy.auto_threshold
    if proposal.confidence < auto_threshold:
        return None
    return demotable.fire(
        proposal,
        rule=rules.OVER_CONFIDENCE,
        evidence={
            "proposal": str(proposal.pk),
            "confidence": proposal.confidence,
            "auto_threshold": auto_threshold,
            "routed_under_version": proposal.policy_version,
            "analyst": analyst,
            "reason": reason,
        },
    )


def rollback_firing(execution: Execution, *, analyst: str, reason: str) -> Firing | None:
    """An analyst is rolling back an execution: an automatic one fires its rule; any rollback
    counts against the failure rate."""
    proposal = execution.proposal
    if proposal.status == ProposalStatus.AUTO_APPROVED:
        demotable = _demotable(proposal.agent_id, proposal.action)
        if demotable is not None and demotable.grant_rules.automatic_rollback:
            return demotable.fire(
                proposal,
                rule=rules.AUTOMATIC_ROLLBACK,
                evidence={
                    "execution": str(execution.pk),
                    "proposal": str(proposal.pk),
                    "analyst": analyst,
                    "reason": reason,
                    "approved_under_version": proposal.policy_version,
                },
            )
    return failure_rate_firing(execution, becomes=ExecutionStatus.ROLLING_BACK)


def _slug(proposal: Proposal) -> str:
    agent = sql.agent_if_loaded(proposal)
    if agent is not None:
        return agent.slug
    return Agent.objects.values_list("slug", flat=True).get(pk=proposal.agent_id)


# --- the demotion -----------------------------------------------------------------------------


@transaction.atomic
def grant_demote(firing: Firing) -> Policy | None:
    """Publish the new live version with the grant lowered, hold its queued automatic
    executions, and record grant.demoted; None when a concurrent demotion lowered it first.

    Called inside the trigger's transaction, after its event, with the stop row's lock already
    held (the `*_firing` functions take it).
    """
    sql.stop_engaged_locked()  # held already; a no-op that keeps the order if it was not
    agent = Agent.objects.select_for_update().get(pk=firing.agent_id)
    current = agent.policies.live().prefetch_related("grants").first()
    level = current.level_for(firing.action) if current else 0
    if current is None or level <= firing.to_level:
        return None  # another firing got there first, or a manager lowered it meanwhile
    published = policy_publish(
        agent=agent, grants={firing.action: firing.to_level}, by=SYSTEM, actor_type="system"
    )
    held = _hold_automatic(firing)
    data = {
        "agent": firing.agent,
        "action": firing.action,
        "from_level": level,
        "to_level": firing.to_level,
        "rule": firing.rule,
        "evidence": firing.evidence,
        "policy_version": published.version,
        "previous_version": current.version,
        "held_executions": held,
    }
    event = log.record(
        event_type=DEMOTED,
        actor=SYSTEM,
        actor_type="system",
        proposal_id=firing.evidence.get("proposal"),
        data=data,
    )
    seq = event.seq
    after_commit(lambda: live.publish(live.grant_demoted, data, seq))
    after_commit(lambda: notify.grant_demoted(data, seq=seq))
    return published


def _hold_automatic(firing: Firing) -> list[str]:
    """Hold the grant's queued executions that were approved automatically at a level above
    the new one and not confirmed by an analyst since: each its own execution.held."""
    queued = (
        Execution.objects.filter(
            status=ExecutionStatus.QUEUED,
            proposal__agent_id=firing.agent_id,
            proposal__action=firing.action,
            proposal__status=ProposalStatus.AUTO_APPROVED,
            proposal__reviewed_at__isnull=True,
        )
        .select_related("proposal")
        .order_by("created_at")
    )
    held = []
    for execution in queued:
        if approved_level(execution.proposal) > firing.to_level and hold(
            execution.pk, why=HOLD_WHY
        ):
            held.append(str(execution.pk))
    return held
