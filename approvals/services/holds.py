"""The emergency stop and agent suspension, and the holding of queued executions they cause.

This is their one home: engaging and lifting the stop, suspending and resuming an agent,
queued → held, and the two ways out of held: an analyst's re-confirmation (held → queued) or
cancellation (held → cancelled). A claim takes the stop row's lock (approvals.sql) so that it
is ordered against engaging the stop and suspending an agent, which take it here.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from agents.models import Agent, EmergencyStop
from audit import log
from soc_console import roles
from soc_console.errors import InvalidInput, NotFound, NotPermitted, WrongState

from .. import live, notify
from ..models import Execution, ExecutionStatus, Proposal, ProposalStatus
from .shared import (
    SYSTEM,
    after_commit,
    callback,
    check_may_decide,
    dispatch,
    execution_move,
    reason_given,
    text,
    username,
)


def emergency_stop_engaged() -> bool:
    return EmergencyStop.objects.filter(id=1, engaged=True).exists()


def hold_reason(agent_id: int) -> str | None:
    """Why nothing of this agent may start now, or None when it may."""
    if emergency_stop_engaged():
        return "emergency stop"
    if Agent.objects.filter(pk=agent_id, suspended=True).exists():
        return "agent suspended"
    return None


def hold(
    execution_id: uuid.UUID | str,
    *,
    why: str,
    actor: str = SYSTEM,
    actor_type: str = "system",
    locked: Execution | None = None,
) -> Execution | None:
    """queued → held, with its audit event: the one way an execution is held."""
    return execution_move(
        execution_id,
        allowed=[ExecutionStatus.QUEUED],
        to=ExecutionStatus.HELD,
        event_type="execution.held",
        actor=actor,
        actor_type=actor_type,
        changes={"lease_until": None},
        data={"why": why},
        locked=locked,
    )


def _hold_queued(
    executions: QuerySet[Execution], *, why: str, actor: str, actor_type: str = "user"
) -> list[str]:
    """Hold every queued execution of the set, each with its own audit event."""
    held = []
    for pk in executions.filter(status=ExecutionStatus.QUEUED).values_list("pk", flat=True):
        if hold(pk, why=why, actor=actor, actor_type=actor_type):
            held.append(str(pk))
    return held


def _set_stop(stop: EmergencyStop, *, engaged: bool, reason: str, by: AbstractBaseUser) -> None:
    stop.engaged = engaged
    stop.reason = reason
    stop.changed_by = by
    stop.changed_at = timezone.now()
    stop.save(update_fields=["engaged", "reason", "changed_by", "changed_at"])


@transaction.atomic
def emergency_stop_engage(*, by: AbstractBaseUser, reason: str) -> EmergencyStop:
    if not roles.can_stop(by):
        raise NotPermitted("Only managers and admins can pull the emergency stop.")
    reason = text(reason, field="reason")
    if not reason:
        raise InvalidInput("Say why you stop.", errors={"reason": ["A reason is required."]})
    stop, _ = EmergencyStop.objects.select_for_update().get_or_create(id=1)
    if stop.engaged:
        raise WrongState(f"The emergency stop is already engaged: {stop.reason}")
    _set_stop(stop, engaged=True, reason=reason, by=by)
    held = _hold_queued(Execution.objects.all(), why="emergency stop", actor=username(by))
    log.record(
        event_type="emergency_stop.engaged",
        actor=username(by),
        data={"reason": reason, "held_executions": held},
    )
    after_commit(lambda: live.publish(live.stop_changed))
    return stop


@transaction.atomic
def emergency_stop_release(*, by: AbstractBaseUser, reason: str = "") -> EmergencyStop:
    if not roles.can_stop(by):
        raise NotPermitted("Only managers and admins can lift the emergency stop.")
    reason = text(reason, field="reason")
    stop, _ = EmergencyStop.objects.select_for_update().get_or_create(id=1)
    if not stop.engaged:
        raise WrongState("The emergency stop is not engaged.")
    _set_stop(stop, engaged=False, reason=reason, by=by)
    log.record(
        event_type="emergency_stop.released",
        actor=username(by),
        data={"reason": stop.reason},
    )
    after_commit(lambda: live.publish(live.stop_changed))
    return stop


@transaction.atomic
def agent_suspend(*, agent: Agent, by: AbstractBaseUser, reason: str) -> Agent:
    if not roles.can_suspend_agent(by):
        raise NotPermitted("Only senior analysts, managers and admins can suspend an agent.")
    reason = text(reason, field="reason")
    if not reason:
        raise InvalidInput(
            "A suspension needs a reason.", errors={"reason": ["Say why you suspend it."]}
        )
    if not _suspend(agent, actor=username(by), actor_type="user", reason=reason):
        raise WrongState(f"{agent.slug} is already suspended.")
    return Agent.objects.get(pk=agent.pk)


def agent_suspend_by_breaker(*, agent: Agent, reason: str, limit: dict[str, Any]) -> bool:
    """The circuit breaker's suspension (approvals.services.submission), by "system", inside
    the submission's transaction; False when the agent was suspended already (a concurrent
    submission tripped it first: one suspension, one event, one mail)."""
    return _suspend(agent, actor=SYSTEM, actor_type="system", reason=reason, limit=limit)


def _suspend(
    agent: Agent,
    *,
    actor: str,
    actor_type: str,
    reason: str,
    limit: dict[str, Any] | None = None,
) -> bool:
    """active → suspended, its queued executions held, its audit event, and on commit the live
    badge on its cards and one mail to the managers. The one way an agent is suspended."""
    # Taking the stop row's lock orders this against execution claims (see approvals.sql).
    EmergencyStop.objects.select_for_update().get_or_create(id=1)
    updated = Agent.objects.filter(pk=agent.pk, suspended=False).update(
        suspended=True, suspended_reason=reason
    )
    if not updated:
        return False
    held = _hold_queued(
        Execution.objects.filter(proposal__agent=agent),
        why="agent suspended",
        actor=actor,
        actor_type=actor_type,
    )
    data: dict[str, Any] = {"agent": agent.slug, "reason": reason, "held_executions": held}
    if limit is not None:
        data["breaker"] = limit
    log.record(event_type="agent.suspended", actor=actor, actor_type=actor_type, data=data)
    _agent_changed(agent.pk)
    slug = agent.slug
    after_commit(lambda: notify.agent_suspended(slug=slug, reason=reason, by=actor))
    return True


def _agent_changed(agent_id: int) -> None:
    """On commit, every console redraws the agent's cards on its page (the suspended badge,
    the approve control) and the queue's notice of suspended agents."""
    after_commit(lambda: live.publish(live.agent_changed, agent_id))


@transaction.atomic
def agent_resume(*, agent: Agent, by: AbstractBaseUser) -> Agent:
    if not roles.can_manage_agents(by) and not roles.can_stop(by):
        raise NotPermitted("Only managers and admins can resume an agent.")
    updated = Agent.objects.filter(pk=agent.pk, suspended=True).update(
        suspended=False, suspended_reason=""
    )
    if not updated:
        raise WrongState(f"{agent.slug} is not suspended.")
    log.record(event_type="agent.resumed", actor=username(by), data={"agent": agent.slug})
    _agent_changed(agent.pk)
    return Agent.objects.get(pk=agent.pk)


# --- the ways out of held ----------------------------------------------------------------


@transaction.atomic
def execution_reconfirm_held(
    *, execution_id: uuid.UUID | str, analyst: AbstractBaseUser
) -> Execution:
    """After a stop, a suspension or a demotion, an analyst re-confirms a held execution:
    held → queued.

    For an action approved automatically this is an analyst's confirmation of it, recorded as
    the proposal's review (as proposal_review_confirm does): the claim then no longer asks
    whether its grant still runs it at once, so a demoted grant's execution runs once
    re-confirmed instead of being held again.
    """
    check_may_decide(analyst)
    if emergency_stop_engaged():
        raise WrongState("The emergency stop is still engaged; lift it first.")
    execution = Execution.objects.select_related("proposal__agent").filter(pk=execution_id).first()
    if execution is None:
        raise NotFound(f"No execution {execution_id}.")
    if execution.proposal.agent.suspended:
        raise WrongState(f"The agent {execution.proposal.agent.slug} is still suspended.")
    now = timezone.now()
    moved = execution_move(
        execution_id,
        allowed=[ExecutionStatus.HELD],
        to=ExecutionStatus.QUEUED,
        event_type="execution.reconfirmed",
        actor=username(analyst),
        actor_type="user",
        changes={"queued_at": now, "not_before": None},
    )
    if moved is None:
        raise WrongState("This execution is not held.")
    Proposal.objects.filter(
        pk=execution.proposal_id, status=ProposalStatus.AUTO_APPROVED, reviewed_at__isnull=True
    ).update(reviewed_by=analyst, reviewed_at=now)
    dispatch(moved.pk)
    return moved


@transaction.atomic
def execution_cancel_held(
    *, execution_id: uuid.UUID | str, analyst: AbstractBaseUser, reason: str = ""
) -> Execution:
    """An analyst declines a held execution, with a reason: held → cancelled, and it never
    runs. After a stop for a suspected compromise, what was approved before it may be what
    nobody wants run now; re-confirming is not the only way out of held. It counts as no
    outcome of the agent's (no failure, no demotion rule), and the agent is told."""
    check_may_decide(analyst)
    reason = reason_given(
        reason, refusal="Cancelling a held action needs a reason.", hint="Say why it must not run."
    )
    moved = execution_move(
        execution_id,
        allowed=[ExecutionStatus.HELD],
        to=ExecutionStatus.CANCELLED,
        event_type="execution.cancelled",
        actor=username(analyst),
        actor_type="user",
        changes={"finished_at": timezone.now(), "not_before": None},
        data={"reason": reason},
    )
    if moved is None:
        status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
        if status is None:
            raise NotFound(f"No execution {execution_id}.")
        raise WrongState(f"This execution is {status}, not held: only a held one is cancelled.")
    callback(moved.proposal_id, "cancelled")
    return moved
