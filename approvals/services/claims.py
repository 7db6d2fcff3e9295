"""A worker's claim on an execution or its rollback: one function, one locking style.

Both kinds are the same compare-and-set (approvals.sql.claim): the stop row's lock, then one
conditional UPDATE that returns the row, then its proposal, sent together. When the claim
loses, a locking read of the execution says why and settles what must follow (hold it, send
its task again for later, or give up on attempts lost to dying workers).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import notify, sql
from ..models import Execution, ExecutionStatus
from . import demotion
from .holds import hold
from .shared import after_commit, callback, dispatch, execution_move, execution_moved


@dataclass(frozen=True)
class Claim:
    execution: Execution
    attempt: int
    rollback: bool


class _StopRowAppeared(Exception):
    """A claim went through without the stop row's lock: see _compare_and_set."""


def execution_claim(
    *, execution_id: uuid.UUID | str, rollback: bool = False, announce: bool = True
) -> Claim | None:
    """A worker takes an execution: queued → running (or a rollback: rolling_back with a new
    rollback attempt), attempt + 1, with a lease.

    With the emergency stop engaged or the agent suspended a queued execution is held instead,
    as is an automatic one whose grant has been demoted since its approval; a rollback waits,
    rolling_back, and the sweeper dispatches it again once the stop is lifted. announce=False
    leaves the live update of the start to the caller (execution_run).
    """
    try:
        return _claim(execution_id, rollback=rollback, announce=announce)
    except _StopRowAppeared:
        # Rolled back; the row is committed now, so this attempt takes its lock.
        return _claim(execution_id, rollback=rollback, announce=announce)


@transaction.atomic
def _claim(execution_id: uuid.UUID | str, *, rollback: bool, announce: bool) -> Claim | None:
    now = timezone.now()
    claimed = _compare_and_set(execution_id, now, rollback=rollback)
    execution = claimed.execution
    if execution is None:
        if rollback:
            _rollback_not_claimed(execution_id, stopped=claimed.stopped, now=now)
        else:
            _not_claimed(execution_id, stopped=claimed.stopped, now=now)
        return None
    attempt = execution.rollback_attempts if rollback else execution.attempts
    moved = execution_moved(
        execution,
        event_type="execution.rollback_started" if rollback else "execution.started",
        data={"attempt": attempt},
        publish=announce,
    )
    return Claim(moved, attempt, rollback=rollback)


def _compare_and_set(
    execution_id: uuid.UUID | str, now: datetime, *, rollback: bool
) -> sql.Claimed:
    claimed = sql.claim(execution_id, now, rollback=rollback)
    if claimed.stop_row:
        return claimed
    if claimed.execution is not None:
        # Another claim committed the stop row between the first two statements (each reads
        # afresh): the UPDATE saw it, the locking read did not, so this claim holds no lock
        # against a stop. Start over rather than run unordered.
        raise _StopRowAppeared
    # A fresh database: nothing was claimed (the UPDATE needs the row). Create the row,
    # holding its lock, and claim with it.
    sql.stop_engaged_locked()
    return _compare_and_set(execution_id, now, rollback=rollback)


def _not_claimed(execution_id: uuid.UUID | str, *, stopped: bool, now: datetime) -> None:
    """A queued execution the claim did not take: hold it if the stop, a suspension or its
    grant's demotion is why."""
    execution = (
        Execution.objects.select_for_update(of=("self",))
        .select_related("proposal__agent")
        .filter(pk=execution_id)
        .first()
    )
    if execution is None or execution.status != ExecutionStatus.QUEUED:
        return
    if execution.proposal.synthetic:
        # The claim never takes an attention check's execution, and none should exist: fail
        # it, so that nothing sends it again.
        execution_move(
            execution.pk,
            allowed=[ExecutionStatus.QUEUED],
            to=ExecutionStatus.FAILED,
            event_type="execution.failed",
            changes={"finished_at": now, "error": "an attention check is never executed"},
            data={"error": "an attention check is never executed", "synthetic": True},
            locked=execution,
        )
        return
    if execution.not_before and execution.not_before > now:
        # Early: an approval's undo window or a retry's backoff is not over. Its own delayed
        # task is due then; this message, come early (a re-dispatch, a clock a little ahead),
        # is sent again for that moment instead of leaving the execution to the sweeper.
        dispatch(execution.pk, due=execution.not_before)
        return
    if stopped or execution.proposal.agent.suspended:
        hold(
            execution_id,
            why="emergency stop" if stopped else "agent suspended",
            locked=execution,
        )
    elif demotion.demoted_since_approval(execution.proposal):
        hold(execution_id, why=demotion.HOLD_WHY, locked=execution)
    # Otherwise the agent was resumed between the two statements: the sweeper dispatches it.


def _rollback_not_claimed(execution_id: uuid.UUID | str, *, stopped: bool, now: datetime) -> None:
    """A rollback the claim did not take: give up once lost attempts have used up the rest."""
    if stopped:
        return  # it stays rolling_back; the sweeper dispatches it again once the stop is lifted
    execution = Execution.objects.select_for_update(of=("self",)).filter(pk=execution_id).first()
    if execution is None or execution.status != ExecutionStatus.ROLLING_BACK:
        return
    if execution.lease_until and execution.lease_until > now:
        return  # another worker holds it
    if execution.not_before and execution.not_before > now:
        return
    if execution.rollback_attempts >= settings.EXECUTION_MAX_ATTEMPTS:
        # Only lost attempts get here: a transient error on the last one settles as failed.
        give_up_lost(execution_id, rollback=True, guard=None, now=now)


def give_up_lost(
    execution_id: uuid.UUID | str, *, rollback: bool, guard: Q | None, now: datetime
) -> Execution | None:
    """Fail an execution whose attempts were all used up by workers that died or hung."""
    error = (
        f"the worker stopped answering (gave up after {settings.EXECUTION_MAX_ATTEMPTS} attempts)"
    )
    firing = None
    if not rollback:
        # A rollback that fails was counted as bad when it was asked for; an execution that
        # fails counts now, and may fire its grant's failure-rate rule.
        running = (
            Execution.objects.select_related("proposal")
            .filter(guard or Q(), pk=execution_id, status=ExecutionStatus.RUNNING)
            .first()
        )
        if running is None:
            return None
        firing = demotion.failure_rate_firing(running, becomes=ExecutionStatus.FAILED)
    moved = execution_move(
        execution_id,
        allowed=[ExecutionStatus.ROLLING_BACK if rollback else ExecutionStatus.RUNNING],
        to=ExecutionStatus.ROLLBACK_FAILED if rollback else ExecutionStatus.FAILED,
        guard=guard,
        event_type="execution.rollback_failed" if rollback else "execution.failed",
        changes={"lease_until": None, "finished_at": now, "error": error},
        data={"error": error},
    )
    if moved:
        after_commit(lambda: notify.execution_failed(moved.pk))
        callback(moved.proposal_id, "rollback_failed" if rollback else "failed")
        if firing is not None:
            demotion.grant_demote(firing)
    return moved
