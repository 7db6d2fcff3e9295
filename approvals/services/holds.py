"""The emergency stop and agent suspension, and the holding of queued executions they cause.

This is their one home: engaging and lifting the stop, suspending and resuming an agent, and
queued → held. A claim takes the stop row's lock (approvals.sql) so that it is ordered against
engaging the stop and suspending an agent, which take it here.
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
from soc_console.errors import InvalidInput, NotPermitted, WrongState

from .. import live, notify
from ..models import Execution, ExecutionStatus
from .shared import SYSTEM, after_commit, execution_move, text, username


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
