"""What every transition family uses: free-text checks, on-commit effects, the one way an
execution changes status.

Side effects leave only on commit, through `after_commit`: the live update, the execution's
task (enqueued by name, see approvals.enqueue), the agent's callback, mail.
"""

from __future__ import annotations

import copy
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Prefetch, Q, prefetch_related_objects
from django.utils import timezone

from agents import lookalikes
from agents.models import Agent
from audit import log
from soc_console import roles
from soc_console.contract import bidi_control_problem
from soc_console.errors import InvalidInput, NotPermitted, WrongState

from .. import callbacks, enqueue, live
from ..models import MAX_TEXT, MIN_REASON, Decision, Execution, ExecutionStatus, Proposal

SYSTEM = "system"


def text(value: Any, *, field: str) -> str:
    """Free text from a person (a reason, a note): trimmed, bounded, and storable.

    PostgreSQL cannot store a NUL character; refusing it here gives a clear error instead of
    a failed transaction. A bidirectional control is refused as in what agents write: a note
    is read by other analysts and in the audit log, where it would reorder what they see.
    """
    cleaned = "" if value is None else str(value).strip()
    if "\x00" in cleaned:
        raise InvalidInput(
            f"The {field} contains a NUL character.", errors={field: ["Remove NUL characters."]}
        )
    reordering = bidi_control_problem(cleaned)
    if reordering is not None:
        said = f"The {field} {reordering[0].lower()}{reordering[1:]}"
        raise InvalidInput(said, errors={field: [reordering]})
    if len(cleaned) > MAX_TEXT:
        raise InvalidInput(
            f"The {field} is {len(cleaned)} characters long; the limit is {MAX_TEXT}.",
            errors={field: [f"At most {MAX_TEXT} characters."]},
        )
    return cleaned


def reason_given(value: Any, *, refusal: str, hint: str) -> str:
    """The reason a rejection or a rollback must give, or a 400 on the reason field."""
    reason = text(value, field="reason")
    if shown_length(reason) < MIN_REASON:
        raise InvalidInput(short_reason(refusal, reason), errors={"reason": [hint]})
    return reason


def shown_length(text: str) -> int:
    """How many characters of `text` a reader sees: not spaces of any kind, nor invisible
    format or control characters, fillers (three zero-width spaces are no reason), nor
    combining and enclosing marks, which are seen only on the letter they mark (three accents
    alone are no reason, and `á` with two more accents is one character)."""
    return sum(
        1
        for char in text
        if not lookalikes.blank(char) and unicodedata.category(char) not in ("Mn", "Me")
    )


def short_reason(refusal: str, reason: str) -> str:
    """The refusal of a missing reason, with the minimum when one too short was given."""
    if not reason:
        return refusal
    return f"{refusal.rstrip('.')} of at least {MIN_REASON} characters; “{reason}” is too short."


def username(user: AbstractBaseUser) -> str:
    return user.get_username()


def check_may_decide(user: AbstractBaseUser) -> None:
    if not roles.can_decide(user):
        raise NotPermitted(
            "Only analysts, senior analysts and admins decide proposals and roll back actions.",
            code="not_an_analyst",
        )


# --- on commit --------------------------------------------------------------------------------


def after_commit(fn: Callable[[], Any]) -> None:
    # robust: a broker or Redis outage must not turn a committed decision into a 500;
    # the sweeper re-dispatches whatever was not enqueued.
    transaction.on_commit(fn, robust=True)


def rollup_due(*moments: datetime) -> None:
    """The reports' rollups of the days of these moments need a rebuild once this commits,
    and today's: the fatigue figures count a decision on the day it was given, and what a
    change touches (a decision, an execution's outcome) was decided today or on one of these
    days."""
    after_commit(lambda: enqueue.rollup_due(*moments, timezone.now()))


def publish_proposal(proposal_id: uuid.UUID) -> None:
    after_commit(lambda: live.publish(live.proposal_changed, proposal_id))


def publish_execution(proposal_id: uuid.UUID) -> None:
    after_commit(lambda: live.publish(live.execution_changed, proposal_id))


def publish_committed(proposal: Proposal) -> None:
    """Broadcast a proposal this transaction wrote, rendered from this copy after commit.

    Reading it back after commit would cost the web process the proposal page's queries at
    the moment a worker starts the action the decision let through. Its decisions are loaded
    here, inside the transaction, unless already known (a new proposal has none: Django skips
    a prefetch that is already there).
    """
    prefetch_related_objects([proposal], decisions_with_analysts())
    # A copy: the request goes on using its own instance while the live update renders this.
    written = copy.copy(proposal)
    after_commit(lambda: live.publish(live.proposal_committed, written))


def decisions_with_analysts() -> Prefetch:
    return Prefetch("decisions", queryset=Decision.objects.select_related("analyst"))


def dispatch(
    execution_id: uuid.UUID,
    *,
    rollback: bool = False,
    countdown: float = 0,
    due: datetime | None = None,
    unless: Callable[[], bool] | None = None,
) -> None:
    """Enqueue the execution's task on commit, to run `countdown` seconds after it is sent or
    at `due`; `unless`, asked then, can call it off."""
    name = enqueue.RUN_ROLLBACK if rollback else enqueue.RUN_EXECUTION

    def send() -> None:
        if unless is None or not unless():
            if due is not None:
                enqueue.send(name, str(execution_id), eta=due)
            else:
                enqueue.send(name, str(execution_id), countdown=countdown or None)

    after_commit(send)


def callback(
    proposal_id: uuid.UUID, event: str, *, agent: Agent | None = None, countdown: float = 0
) -> None:
    """Tell the agent of `event` on commit, if it listens (see approvals.callbacks)."""
    if agent is not None and not agent.callback_url:
        return  # most agents poll: with the row at hand, no lookup after commit
    after_commit(
        lambda: callbacks.schedule(proposal_id=proposal_id, event=event, countdown=countdown)
    )


# --- executions -------------------------------------------------------------------------------


def execution_create(
    proposal: Proposal,
    now: datetime,
    *,
    dispatch_now: bool = True,
    not_before: datetime | None = None,
) -> Execution:
    """A queued execution for an approved proposal; its task is enqueued on commit unless the
    caller dispatches it itself."""
    if proposal.synthetic:
        # An attention check has nothing to run; the decisions stop it before this, and the
        # claim would refuse it (approvals.sql), but no path may even queue one.
        raise WrongState("An attention check is never executed.", code="attention_check")
    execution = Execution.objects.create(
        proposal=proposal,
        status=ExecutionStatus.QUEUED,
        idempotency_key=uuid.uuid4().hex,
        not_before=not_before,
        created_at=now,
        queued_at=now,
        updated_at=now,
    )
    if dispatch_now:
        dispatch(execution.id)
    return execution


def execution_move(
    execution_id: uuid.UUID | str,
    *,
    allowed: Iterable[str],
    to: str,
    event_type: str,
    actor: str = SYSTEM,
    actor_type: str = "system",
    guard: Q | None = None,
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    publish: bool = True,
    locked: Execution | None = None,
) -> Execution | None:
    """The way an execution changes status: a compare-and-set plus its audit event.

    (The claim is the one other: the same compare-and-set written as a single statement in
    approvals.sql, followed by the same execution_moved.)

    Returns None when the row was not in an allowed state (another worker, the sweeper or an
    analyst got there first); the caller decides whether that is an error. A caller that
    holds the row's lock passes its copy as `locked`, which is updated instead of re-read.
    """
    now = timezone.now()
    values = {"status": to, "updated_at": now, **(changes or {})}
    query = Q(pk=execution_id, status__in=list(allowed))
    if guard is not None:
        query &= guard
    updated = Execution.objects.filter(query).update(**values)
    if not updated:
        return None
    if locked is not None:
        execution = locked
        for field, value in values.items():
            setattr(execution, field, value)
    else:
        execution = Execution.objects.select_related("proposal").get(pk=execution_id)
    return execution_moved(
        execution,
        event_type=event_type,
        actor=actor,
        actor_type=actor_type,
        data=data,
        publish=publish,
    )


def execution_moved(
    execution: Execution,
    *,
    event_type: str,
    actor: str = SYSTEM,
    actor_type: str = "system",
    data: dict[str, Any] | None = None,
    publish: bool = True,
) -> Execution:
    """What follows every status change: its audit event, and the live update on commit."""
    log.record(
        event_type=event_type,
        actor=actor,
        actor_type=actor_type,
        proposal_id=execution.proposal_id,
        data={"execution": str(execution.id), "status": execution.status, **(data or {})},
    )
    if publish:
        publish_execution(execution.proposal_id)
    # What an execution became counts in the reports of the day its proposal was submitted.
    # A claim (queued → running) changes nothing they count, and it is on the way to the
    # connector call: it asks nothing of Redis.
    if execution.status == ExecutionStatus.RUNNING:
        return execution
    # Its decisions count in the fatigue figures of the days they were given: the days of its
    # submission and final decision (a first approval of two falls on one of them unless the
    # proposal waited past a whole day; the beat rebuilds today and yesterday anyway).
    if Execution.proposal.is_cached(execution):
        proposal = execution.proposal
        rollup_due(*filter(None, (proposal.created_at, proposal.decided_at)))
    else:
        moments = Proposal.objects.filter(pk=execution.proposal_id).values_list(
            "created_at", "decided_at"
        )
        rollup_due(*filter(None, (moment for pair in moments for moment in pair)))
    return execution
