"""An analyst's verdict on a pending proposal: approve, reject, undo an approval, and the
after-the-fact review of an auto-approved action. The other ways out of pending: closing.py;
several proposals at once: bulk.py."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit import events, log
from soc_console import roles
from soc_console.errors import (
    AttentionCheckMissed,
    NotFound,
    NotPermitted,
    WrongState,
)

from .. import live, sessions, sql
from ..models import Decision, Execution, ExecutionStatus, Proposal, ProposalStatus, Verdict
from . import demotion
from .attention import check_caught, check_missed
from .holds import hold, hold_reason
from .pending import finish_pending, locked_pending
from .shared import (
    after_commit,
    check_may_decide,
    dispatch,
    execution_create,
    publish_committed,
    publish_proposal,
    reason_given,
    rollup_due,
    text,
    username,
)

# The event of an approval taken back: the one way a proposal comes back to pending (a duplicate
# group's decision reads it, see bulk.py).
APPROVAL_UNDONE = "proposal.approval_undone"


def clamp_seconds_on_card(raw: Any) -> float | None:
    """Time from the card shown to the decision, as reported by the browser.

    Browsers lie (clock changes, tabs left open overnight): negative or non-numbers are
    dropped, and long stretches are clamped so one forgotten tab cannot skew the reports.
    """
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, float(settings.REVIEW_SECONDS_MAX))


def _decision_record(
    proposal: Proposal,
    analyst: AbstractBaseUser,
    *,
    verdict: Verdict,
    reason: str,
    seconds_on_card: float | None,
    now: datetime,
) -> None:
    Decision.objects.create(
        proposal=proposal,
        analyst=analyst,
        verdict=verdict,
        reason=reason,
        seconds_on_card=seconds_on_card,
        created_at=now,
    )


def proposal_approve(
    *,
    proposal_id: uuid.UUID | str,
    analyst: AbstractBaseUser,
    reason: str = "",
    seconds_on_card: Any = None,
) -> Proposal:
    """Approve a pending proposal; the last approval it needs queues its execution.

    An attention check is never approved: the approval settles it as missed, in its own
    committed transaction, and AttentionCheckMissed then tells the caller (the card, the
    API, a bulk decision) what the card got wrong. Nothing runs.
    """
    proposal, stopped = _approve(
        proposal_id=proposal_id, analyst=analyst, reason=reason, seconds_on_card=seconds_on_card
    )
    if stopped is not None:
        raise AttentionCheckMissed(stopped)
    return proposal


@transaction.atomic
def _approve(
    *,
    proposal_id: uuid.UUID | str,
    analyst: AbstractBaseUser,
    reason: str,
    seconds_on_card: Any,
) -> tuple[Proposal, str | None]:
    check_may_decide(analyst)
    reason = text(reason, field="reason")
    proposal = locked_pending(proposal_id)
    if proposal.synthetic:
        # Before every other rule, so that no refusal gives the check away.
        seconds = clamp_seconds_on_card(seconds_on_card)
        return proposal, check_missed(proposal, analyst, reason=reason, seconds_on_card=seconds)
    if proposal.agent.suspended:
        # Its queued work is held, so an approval would only queue another held action: the
        # card says so and offers rejection (or waiting for a manager to resume the agent).
        raise WrongState(
            f"{proposal.agent.slug} is suspended ({proposal.agent.suspended_reason}): its "
            "proposals cannot be approved until a manager resumes it. Reject them instead.",
            code="agent_suspended",
        )
    if proposal.decisions.filter(analyst=analyst).exists():
        raise NotPermitted(
            "You have already approved this proposal; a second, different analyst must give "
            "the other approval.",
            code="second_approver_required",
        )
    final = proposal.approvals + 1 >= proposal.required_approvals
    if final and proposal.criticality == "critical" and not roles.is_senior(analyst):
        raise NotPermitted(
            "This proposal targets a critical asset: the final approval must come from a "
            "senior analyst.",
            code="senior_required",
        )
    now = timezone.now()
    seconds = clamp_seconds_on_card(seconds_on_card)
    _decision_record(
        proposal, analyst, verdict=Verdict.APPROVE, reason=reason, seconds_on_card=seconds, now=now
    )
    facts = {
        "reason": reason,
        "approvals": proposal.approvals + 1,
        "required_approvals": proposal.required_approvals,
        "seconds_on_card": seconds,
    }
    if final:
        return _approve_final(proposal, analyst, facts=facts, now=now), None
    return _approval_recorded(proposal, analyst, facts=facts), None


def _approval_recorded(
    proposal: Proposal, analyst: AbstractBaseUser, *, facts: dict[str, Any]
) -> Proposal:
    """One approval of several: counted, and the proposal stays pending for the next analyst."""
    approvals = facts["approvals"]
    Proposal.objects.filter(pk=proposal.pk).update(approvals=approvals)
    proposal.approvals = approvals
    log.record(
        event_type=events.APPROVAL_RECORDED,
        actor=username(analyst),
        proposal_id=proposal.id,
        data=events.approval(**facts),
    )
    publish_committed(proposal)
    rollup_due(proposal.created_at)
    return proposal


def _approve_final(
    proposal: Proposal, analyst: AbstractBaseUser, *, facts: dict[str, Any], now: datetime
) -> Proposal:
    """The approval that lets the action run: approved, with its execution, after the undo
    window (APPROVAL_UNDO_SECONDS)."""
    # The execution may not start before the window ends (the claim checks not_before,
    # whatever message arrives), and its task is due the moment it ends.
    window = settings.APPROVAL_UNDO_SECONDS
    not_before = now + timedelta(seconds=window) if window else None
    execution = execution_create(proposal, now, dispatch_now=False, not_before=not_before)
    # Registered before the approval's other after-commit work, so that a worker hears of it
    # first; called off if the execution is held below (hold updates this copy's status).
    dispatch(
        execution.id,
        due=not_before,
        unless=lambda: execution.status == ExecutionStatus.HELD,
    )
    approved = finish_pending(
        proposal,
        to=ProposalStatus.APPROVED,
        event_type=events.APPROVED,
        actor=username(analyst),
        actor_type="user",
        data=events.approval(**facts, execution=execution.id, undo_until=not_before),
        extra={"approvals": facts["approvals"]},
        # The agent hears of the approval once it can no longer be undone.
        callback_delay=window,
    )
    # With the stop on or the agent suspended nothing may start: the execution is held as soon
    # as it exists, not left queued for a worker's claim to hold. Read after the approval's
    # audit event, whose head lock orders this transaction against the stop's engage and
    # release (each records its own event): a stop that committed first is seen here; one
    # that commits later finds this execution queued, and the worker's claim holds it.
    why = hold_reason(proposal.agent_id)
    if why is not None:
        hold(execution.pk, why=why, locked=execution)
    if window:
        # Its undo toast on each of the analyst's consoles, not only the one that approved.
        after_commit(lambda: live.publish(sessions.undo_offered, analyst.pk, proposal.pk))
    return approved


@transaction.atomic
def proposal_reject(
    *,
    proposal_id: uuid.UUID | str,
    analyst: AbstractBaseUser,
    reason: str,
    seconds_on_card: Any = None,
) -> Proposal:
    """Reject a pending proposal with a reason."""
    check_may_decide(analyst)
    reason = reason_given(
        reason, refusal="A rejection needs a reason.", hint="Say why you reject it."
    )
    proposal = locked_pending(proposal_id)
    if proposal.decisions.filter(analyst=analyst).exists():
        raise NotPermitted(
            "You already decided this proposal; a different analyst must decide the rest.",
            code="already_decided_by_you",
        )
    seconds = clamp_seconds_on_card(seconds_on_card)
    # Before anything is recorded: a firing rule takes the stop row's lock first (demotion).
    # An attention check is the console's own card, not its agent's confidence: it fires none.
    firing = (
        None
        if proposal.synthetic
        else demotion.over_confidence_firing(proposal, analyst=username(analyst), reason=reason)
    )
    now = timezone.now()
    _decision_record(
        proposal,
        analyst,
        verdict=Verdict.REJECT,
        reason=reason,
        seconds_on_card=seconds,
        now=now,
    )
    data = events.rejection(reason=reason, seconds_on_card=seconds)
    if proposal.synthetic:
        flaw = check_caught(proposal, analyst, seconds_on_card=seconds, now=now)
        data = events.check_caught(reason=reason, seconds_on_card=seconds, flaw=flaw)
    rejected = finish_pending(
        proposal,
        to=ProposalStatus.REJECTED,
        event_type=events.REJECTED,
        actor=username(analyst),
        actor_type="user",
        data=data,
    )
    if firing is not None:
        demotion.grant_demote(firing)
    return rejected


@transaction.atomic
def proposal_review_confirm(
    *, proposal_id: uuid.UUID | str, analyst: AbstractBaseUser, note: str = ""
) -> Proposal:
    """An analyst confirms, after the fact, an action that ran without approval."""
    check_may_decide(analyst)
    note = text(note, field="note")
    now = timezone.now()
    updated = Proposal.objects.filter(
        pk=proposal_id, status=ProposalStatus.AUTO_APPROVED, reviewed_at__isnull=True
    ).update(reviewed_by=analyst, reviewed_at=now)
    if not updated:
        raise WrongState("Only an auto-approved proposal not yet reviewed can be confirmed.")
    log.record(
        event_type="proposal.review_confirmed",
        actor=username(analyst),
        proposal_id=proposal_id,
        data={"note": note},
    )
    publish_proposal(uuid.UUID(str(proposal_id)))
    return Proposal.objects.get(pk=proposal_id)


@transaction.atomic
def approval_undo(*, proposal_id: uuid.UUID | str, analyst: AbstractBaseUser) -> Proposal:
    """Take back an approval within its undo window, before its execution may start.

    Only the analyst whose approval let the action run may undo it, and only while the
    execution has not started and the window (APPROVAL_UNDO_SECONDS) is open; the proposal is
    pending again and anyone, this analyst included, may decide it afresh.

    The approval's decision and its never-started execution are removed rather than marked:
    every reader that counts decisions (the two-person rule, the one-decision-per-analyst
    constraint, the card, the API, the reports) then stays right without a filter that one
    of them could miss. The audit log keeps the approval's event and this one, which carries
    the removed decision and execution.
    """
    check_may_decide(analyst)
    proposal, decision = _approved_by(proposal_id, analyst)
    # Compare-and-set under the execution's row lock: a worker's claim takes the same lock,
    # so either it started first (too late) or it finds nothing to start.
    now = timezone.now()
    execution = Execution.objects.select_for_update().filter(proposal=proposal).first()
    if (
        execution is None
        or execution.attempts
        or execution.status not in (ExecutionStatus.QUEUED, ExecutionStatus.HELD)
        or execution.not_before is None
        or execution.not_before <= now
    ):
        raise WrongState(
            "Too late to undo: the undo window has ended and the action may have run. If it "
            "is reversible, roll it back from the proposal's page.",
            code="undo_window_over",
        )
    Execution.objects.filter(pk=execution.pk).delete()
    decision.delete()
    approvals = max(proposal.approvals - 1, 0)
    changes = {"status": ProposalStatus.PENDING, "decided_at": None, "approvals": approvals}
    Proposal.objects.filter(pk=proposal.pk, status=ProposalStatus.APPROVED).update(**changes)
    for name, value in changes.items():
        setattr(proposal, name, value)
    sql.no_execution_yet(proposal)
    log.record(
        event_type=APPROVAL_UNDONE,
        actor=username(analyst),
        proposal_id=proposal.id,
        data=_undone_data(proposal, execution, decision, now=now),
    )
    publish_committed(proposal)
    rollup_due(proposal.created_at, now)
    after_commit(lambda: live.publish(sessions.undo_ended, analyst.pk, proposal.pk))
    # No callback: the agent hears of an approval only once its window is over (see
    # proposal_approve), and by then this one is gone.
    return proposal


def _approved_by(
    proposal_id: uuid.UUID | str, analyst: AbstractBaseUser
) -> tuple[Proposal, Decision]:
    """The approved proposal, locked, and its last decision, which must be this analyst's."""
    proposal = (
        Proposal.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(pk=proposal_id)
        .first()
    )
    if proposal is None:
        raise NotFound(f"No proposal {proposal_id}.")
    if proposal.status != ProposalStatus.APPROVED:
        raise WrongState(
            f"This proposal is {proposal.get_status_display().lower()}: there is no approval "
            "waiting to run, so nothing to undo."
        )
    decision = (
        Decision.objects.select_related("analyst")
        .filter(proposal=proposal)
        .order_by("-created_at", "-pk")
        .first()
    )
    if decision is None or decision.analyst_id != analyst.pk:
        who = decision.analyst.get_username() if decision else "another analyst"
        raise NotPermitted(
            f"Only {who}, whose approval let it run, can undo it.", code="not_your_approval"
        )
    return proposal, decision


def _undone_data(
    proposal: Proposal, execution: Execution, decision: Decision, *, now: datetime
) -> dict[str, Any]:
    """The proposal.approval_undone event's data: what was removed, for the record."""
    return {
        "execution": str(execution.id),
        "execution_status": execution.status,
        "undo_until": execution.not_before,
        "seconds_left": round((execution.not_before - now).total_seconds(), 3),
        "approval": {
            "reason": decision.reason,
            "seconds_on_card": decision.seconds_on_card,
            "at": decision.created_at,
        },
        "approvals": proposal.approvals,
        "required_approvals": proposal.required_approvals,
    }
