"""Executions after their claim: the connector call, its settling, retries, rollbacks, the
re-confirmation of a held execution and the recovery of a lost one."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents import catalogue
from soc_console.errors import NotFound, WrongState

from .. import background, connectors, live, notify
from ..models import Execution, ExecutionStatus
from . import demotion
from .claims import Claim, execution_claim, give_up_lost
from .holds import emergency_stop_engaged
from .shared import (
    after_commit,
    callback,
    check_may_decide,
    dispatch,
    execution_move,
    execution_moved,
    reason_given,
    text,
    username,
)

# A connector call shorter than this goes from queued to its result on the consoles without a
# "running" frame in between: nobody could read it, and rendering it would slow the call.
ANNOUNCE_RUNNING_AFTER_SECONDS = 0.05


def backoff_seconds(attempt: int) -> float:
    base = settings.EXECUTION_BACKOFF_BASE_SECONDS
    return min(base * (2 ** (attempt - 1)), settings.EXECUTION_BACKOFF_MAX_SECONDS)


def execution_run(*, execution_id: uuid.UUID | str, rollback: bool = False) -> Execution | None:
    """Claim, call the connector outside any transaction, and settle. Used by the worker."""
    claim = execution_claim(execution_id=execution_id, rollback=rollback, announce=False)
    if claim is None:
        return None
    # Rendering the "running" card takes longer than a fast connector call; it must not delay
    # the action, so it runs beside a call that takes a while and not at all for a quick one.
    announcing = background.announce_later(
        ANNOUNCE_RUNNING_AFTER_SECONDS, live.execution_changed, claim.execution.proposal_id
    )
    proposal = claim.execution.proposal
    key = claim.execution.idempotency_key + (":undo" if rollback else "")
    target = proposal.target_canonical or proposal.target
    outcome, result, error = "succeeded", None, ""
    started = time.monotonic()
    try:
        if rollback:
            result = connectors.undo(
                action=proposal.action,
                target=target,
                idempotency_key=key,
                original_key=claim.execution.idempotency_key,
            )
        else:
            result = connectors.perform(
                action=proposal.action, target=target, params=proposal.params, idempotency_key=key
            )
    except connectors.TransientError as exc:
        outcome, error = "transient", str(exc)
    except connectors.PermanentError as exc:
        outcome, error = "permanent", str(exc)
    finally:
        seconds = time.monotonic() - started
        announcing.cancel()  # and wait if it is being sent: the result must come after it
    return execution_settle(
        claim=claim, outcome=outcome, result=result, error=error, connector_seconds=seconds
    )


@transaction.atomic
def execution_settle(
    *,
    claim: Claim,
    outcome: str,
    result: dict[str, Any] | None = None,
    error: str = "",
    connector_seconds: float | None = None,
) -> Execution | None:
    """Record what the connector said for the claimed attempt.

    outcome is "succeeded", "transient" or "permanent". The attempt number fences out a stale
    worker whose lease expired and whose execution another worker has since claimed.
    connector_seconds, how long the call took, goes into the audit event (/metrics reads it).
    """
    timing = {} if connector_seconds is None else {"connector_seconds": round(connector_seconds, 6)}
    if outcome == "succeeded":
        return _settle_succeeded(claim, result, timing)
    if outcome == "transient" and claim.attempt < settings.EXECUTION_MAX_ATTEMPTS:
        return _settle_retry(claim, error, timing)
    if outcome == "transient":
        error = f"{error} (gave up after {claim.attempt} attempts)"
    return _settle_failed(claim, error, timing)


def _running(claim: Claim) -> list[str]:
    return [ExecutionStatus.ROLLING_BACK if claim.rollback else ExecutionStatus.RUNNING]


def _attempt_guard(claim: Claim) -> Q:
    return Q(**{"rollback_attempts" if claim.rollback else "attempts": claim.attempt})


def _prefix(claim: Claim) -> str:
    return "execution.rollback_" if claim.rollback else "execution."


def _settle_succeeded(
    claim: Claim, result: dict[str, Any] | None, timing: dict[str, float]
) -> Execution | None:
    changes: dict[str, Any] = {"lease_until": None, "finished_at": timezone.now(), "error": ""}
    if claim.rollback:
        changes["result"] = {**(claim.execution.result or {}), "rollback": result}
    else:
        changes["result"] = result
    moved = execution_move(
        claim.execution.pk,
        allowed=_running(claim),
        to=ExecutionStatus.ROLLED_BACK if claim.rollback else ExecutionStatus.SUCCEEDED,
        guard=_attempt_guard(claim),
        changes=changes,
        event_type=f"{_prefix(claim)}succeeded",
        data={"attempt": claim.attempt, "result": result, **timing},
    )
    if moved:
        callback(moved.proposal_id, "rolled_back" if claim.rollback else "completed")
    return moved


def _settle_retry(claim: Claim, error: str, timing: dict[str, float]) -> Execution | None:
    now = timezone.now()
    delay = backoff_seconds(claim.attempt)
    moved = execution_move(
        claim.execution.pk,
        allowed=_running(claim),
        to=ExecutionStatus.ROLLING_BACK if claim.rollback else ExecutionStatus.QUEUED,
        guard=_attempt_guard(claim),
        changes={
            "lease_until": None,
            "not_before": now + timedelta(seconds=delay),
            "queued_at": now,
            "error": error,
        },
        event_type=f"{_prefix(claim)}retry_scheduled",
        data={"attempt": claim.attempt, "error": error, "retry_in_seconds": delay, **timing},
    )
    if moved:
        dispatch(moved.pk, rollback=claim.rollback, countdown=delay)
    return moved


def _settle_failed(claim: Claim, error: str, timing: dict[str, float]) -> Execution | None:
    firing = None
    if not claim.rollback:
        # A failed rollback was counted when it was asked for (rolling back is bad already).
        firing = demotion.failure_rate_firing(claim.execution, becomes=ExecutionStatus.FAILED)
    moved = execution_move(
        claim.execution.pk,
        allowed=_running(claim),
        to=ExecutionStatus.ROLLBACK_FAILED if claim.rollback else ExecutionStatus.FAILED,
        guard=_attempt_guard(claim),
        changes={"lease_until": None, "finished_at": timezone.now(), "error": error},
        event_type=f"{_prefix(claim)}failed",
        data={"attempt": claim.attempt, "error": error, **timing},
    )
    if moved:
        after_commit(lambda: notify.execution_failed(moved.pk))
        callback(moved.proposal_id, "rollback_failed" if claim.rollback else "failed")
        if firing is not None:
            demotion.grant_demote(firing)
    return moved


@transaction.atomic
def rollback_request(
    *,
    analyst: AbstractBaseUser,
    execution_id: uuid.UUID | str | None = None,
    proposal_id: uuid.UUID | str | None = None,
    reason: str = "",
) -> Execution:
    """Roll back a succeeded, reversible execution, named by its id or its proposal's."""
    check_may_decide(analyst)
    # Undoing containment is a decision like a rejection: it needs its reason on record.
    reason = reason_given(
        reason, refusal="A rollback needs a reason.", hint="Say why you roll it back."
    )
    lookup = {"pk": execution_id} if execution_id else {"proposal_id": proposal_id}
    execution = Execution.objects.select_related("proposal").filter(**lookup).first()
    if execution is None:
        raise WrongState("There is no execution to roll back.")
    kind = catalogue.get(execution.proposal.action)
    if kind is None or not kind.reversible:
        raise WrongState(f"{execution.proposal.action} cannot be rolled back.")
    if (execution.result or {}).get("already_in_place"):
        # It changed nothing (a duplicate of an effect already there); undoing "it" would undo
        # the call that did, which is that proposal's to roll back.
        raise WrongState(
            "Nothing to roll back: this action found its effect already in place and changed "
            "nothing. Roll back the proposal whose action put it there.",
            code="nothing_to_roll_back",
        )
    if emergency_stop_engaged():
        raise WrongState("The emergency stop is engaged: nothing runs, rollbacks included.")
    firing = None
    if execution.status == ExecutionStatus.SUCCEEDED:
        firing = demotion.rollback_firing(execution, analyst=username(analyst), reason=reason)
    moved = execution_move(
        execution.pk,
        allowed=[ExecutionStatus.SUCCEEDED],
        to=ExecutionStatus.ROLLING_BACK,
        event_type="execution.rollback_requested",
        actor=username(analyst),
        actor_type="user",
        changes={"lease_until": None, "not_before": None, "queued_at": timezone.now()},
        data={"reason": reason, "undo": kind.undo},
    )
    if moved is None:
        raise WrongState("Only a succeeded execution can be rolled back.")
    if firing is not None:
        demotion.grant_demote(firing)
    dispatch(moved.pk, rollback=True)
    return moved


@transaction.atomic
def execution_requeue_expired(*, execution_id: uuid.UUID | str) -> Execution | None:
    """The sweeper's recovery: a running execution whose lease ran out (its worker died)."""
    now = timezone.now()
    # A lost attempt counts like a failed one: an action that kills or hangs its worker every
    # time must end failed and reported, not go round forever.
    exhausted = Q(lease_until__lt=now, attempts__gte=settings.EXECUTION_MAX_ATTEMPTS)
    failed = give_up_lost(execution_id, rollback=False, guard=exhausted, now=now)
    if failed:
        return failed
    moved = execution_move(
        execution_id,
        allowed=[ExecutionStatus.RUNNING],
        to=ExecutionStatus.QUEUED,
        guard=Q(lease_until__lt=now),
        event_type="execution.requeued",
        changes={"lease_until": None, "queued_at": now, "not_before": None},
        data={"why": "lease expired: the worker stopped answering"},
    )
    if moved:
        dispatch(moved.pk)
    return moved


# The statuses an analyst can deal with from the failed list: retry the first, acknowledge both.
NEEDS_ATTENTION = (ExecutionStatus.FAILED, ExecutionStatus.ROLLBACK_FAILED)


@transaction.atomic
def execution_retry(*, execution_id: uuid.UUID | str, analyst: AbstractBaseUser) -> Execution:
    """An analyst starts a new attempt of a failed execution: failed → queued.

    The same execution, with the same idempotency key: if an earlier attempt did reach the
    outside system (its worker died after the call), the connector answers from its ledger
    and the action still takes effect once. The attempt counter goes on from where it stopped,
    so the worker's claim makes it attempt n + 1; as the automatic retries are used up, a
    transient error on this attempt fails it again rather than starting a new backoff cycle:
    one retry, one attempt. Two analysts retrying at once: the compare-and-set lets one win.
    """
    check_may_decide(analyst)
    execution = Execution.objects.select_related("proposal__agent").filter(pk=execution_id).first()
    if execution is None:
        raise NotFound(f"No execution {execution_id}.")
    # A failed execution stays failed while nothing may run: queueing it would only hold it.
    if emergency_stop_engaged():
        raise WrongState("The emergency stop is engaged: nothing runs until it is lifted.")
    if execution.proposal.agent.suspended:
        raise WrongState(f"The agent {execution.proposal.agent.slug} is suspended.")
    now = timezone.now()
    moved = execution_move(
        execution.pk,
        allowed=[ExecutionStatus.FAILED],
        to=ExecutionStatus.QUEUED,
        event_type="execution.retried",
        actor=username(analyst),
        actor_type="user",
        changes={
            "queued_at": now,
            "not_before": None,
            "lease_until": None,
            "finished_at": None,
            "acknowledged_by": None,
            "acknowledged_at": None,
        },
        data={"after_attempt": execution.attempts, "previous_error": execution.error},
    )
    if moved is None:
        status = Execution.objects.filter(pk=execution.pk).values_list("status", flat=True).first()
        if status == ExecutionStatus.ROLLBACK_FAILED:
            raise WrongState("A failed rollback cannot be retried here; acknowledge it instead.")
        raise WrongState(
            f"This execution is {status or 'gone'}, not failed: another analyst retried it "
            "already, or it never failed."
        )
    dispatch(moved.pk)
    return moved


@transaction.atomic
def execution_acknowledge(
    *, execution_id: uuid.UUID | str, analyst: AbstractBaseUser, note: str = ""
) -> Execution:
    """An analyst has seen a failed execution and dealt with it: it stays failed, on record,
    but no longer counts as needing attention."""
    check_may_decide(analyst)
    note = text(note, field="note")
    now = timezone.now()
    # Not a change of status, so not execution_move: the same compare-and-set on the
    # acknowledgement itself, which also makes a second acknowledgement a clear refusal.
    updated = Execution.objects.filter(
        pk=execution_id, status__in=NEEDS_ATTENTION, acknowledged_at__isnull=True
    ).update(acknowledged_by=analyst, acknowledged_at=now, updated_at=now)
    if not updated:
        execution = Execution.objects.select_related("acknowledged_by").filter(pk=execution_id)
        found = execution.first()
        if found is None:
            raise NotFound(f"No execution {execution_id}.")
        if found.acknowledged_by is not None:
            raise WrongState(f"Already acknowledged by {found.acknowledged_by.get_username()}.")
        raise WrongState(f"This execution is {found.status}, not failed.")
    execution = Execution.objects.select_related("proposal").get(pk=execution_id)
    return execution_moved(
        execution,
        event_type="execution.acknowledged",
        actor=username(analyst),
        actor_type="user",
        data={"note": note},
    )
