"""Every state change of proposals, decisions, executions and the emergency stop.

Each public function owns its transaction, checks the allowed starting states with a
conditional UPDATE (or a row lock), writes exactly one audit event in that transaction, and
schedules its side effects (Celery tasks, live updates, callbacks, mail) with on_commit.
Views, the API, Celery tasks and management commands all call these; nothing else assigns a
status field.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, Q, prefetch_related_objects
from django.utils import timezone

from agents import catalogue, targets
from agents.models import Agent, ApiKey, EmergencyStop, Policy
from agents.routing import RoutingInput, route
from agents.selectors import InventoryMatch, inventory_match, routing_context
from audit import log
from soc_console import roles, rows
from soc_console.errors import (
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    NotPending,
    NotPermitted,
    WrongState,
)

from . import connectors, notify
from .models import (
    Decision,
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    Verdict,
)
from .priority import priority_key

logger = logging.getLogger(__name__)

SYSTEM = "system"


MAX_TEXT = 2000


def _text(value: Any, *, field: str) -> str:
    """Free text from a person (a reason, a note): trimmed, bounded, and storable.

    PostgreSQL cannot store a NUL character; refusing it here gives a clear error instead of
    a failed transaction.
    """
    text = "" if value is None else str(value).strip()
    if "\x00" in text:
        raise InvalidInput(
            f"The {field} contains a NUL character.", errors={field: ["Remove NUL characters."]}
        )
    if len(text) > MAX_TEXT:
        raise InvalidInput(
            f"The {field} is {len(text)} characters long; the limit is {MAX_TEXT}.",
            errors={field: [f"At most {MAX_TEXT} characters."]},
        )
    return text


def _after_commit(fn: Callable[[], Any]) -> None:
    # robust: a broker or Redis outage must not turn a committed decision into a 500;
    # the sweeper re-dispatches whatever was not enqueued.
    transaction.on_commit(fn, robust=True)


def _publish_proposal(proposal_id: uuid.UUID) -> None:
    from . import live

    _after_commit(lambda: live.publish(live.proposal_changed, proposal_id))


def _publish_committed(proposal: Proposal) -> None:
    """Broadcast a proposal this transaction wrote, rendered from this copy after commit.

    Reading it back after commit would cost the web process the proposal page's queries at
    the moment a worker starts the action the decision let through. Its decisions are loaded
    here, inside the transaction, unless already known (a new proposal has none).
    """
    from . import live

    if "decisions" not in getattr(proposal, "_prefetched_objects_cache", {}):
        prefetch_related_objects([proposal], _decisions_with_analysts())
    # A copy: the request goes on using its own instance while the live update renders this.
    written = copy.copy(proposal)
    _after_commit(lambda: live.publish(live.proposal_committed, written))


def _decisions_with_analysts() -> Prefetch:
    return Prefetch("decisions", queryset=Decision.objects.select_related("analyst"))


def _dispatch(
    execution_id: uuid.UUID,
    *,
    rollback: bool = False,
    countdown: float = 0,
    due: Any = None,
    unless: Callable[[], bool] | None = None,
) -> None:
    """Enqueue the execution's task on commit, to run `countdown` seconds after it is sent or
    at `due` (a datetime); `unless`, asked then, can call it off."""
    from . import tasks

    task = tasks.run_rollback if rollback else tasks.run_execution

    def send() -> None:
        if unless is None or not unless():
            if due is not None:
                task.apply_async((str(execution_id),), eta=due)
            else:
                task.apply_async((str(execution_id),), countdown=countdown or None)

    _after_commit(send)


def _callback(
    proposal_id: uuid.UUID, event: str, *, agent: Agent | None = None, countdown: float = 0
) -> None:
    from . import callbacks

    if agent is not None and not agent.callback_url:
        return  # most agents poll: with the row at hand, no lookup after commit
    _after_commit(
        lambda: callbacks.schedule(proposal_id=proposal_id, event=event, countdown=countdown)
    )


def _username(user: AbstractBaseUser) -> str:
    return user.get_username()


# --- submission -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    proposal: Proposal
    created: bool


def emergency_stop_engaged() -> bool:
    return EmergencyStop.objects.filter(id=1, engaged=True).exists()


def _stop_engaged_locked() -> bool:
    """Whether the emergency stop is on, holding its row's lock until commit.

    Engaging the stop takes the same lock, so a claim either finished before the stop
    committed or sees it. The lock is exclusive on purpose: a shared one would let claims that
    overlap keep the stop waiting for as long as a backlog lasts. (Claims queue on the audit
    chain's head right after anyway.)
    """
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        # One plain statement: this runs at the start of every claim, on the action's path.
        with connection.cursor() as cursor:
            cursor.execute(_STOP_SQL + " FOR UPDATE")
            row = cursor.fetchone()
        if row is not None:
            return bool(row[0])
    stop, _ = EmergencyStop.objects.select_for_update().get_or_create(id=1)
    return stop.engaged


def target_identity(kind: catalogue.ActionType, target: str) -> targets.Identity:
    """The target's one identity, or a 400 naming the field."""
    try:
        return kind.clean_target(target)
    except targets.TargetError as exc:
        message = f"For {kind.name} the target {exc}."
        raise InvalidInput(message, errors={"target": [message]}) from exc


def _in_scope(policy: Policy, match: InventoryMatch) -> bool:
    """Whether the policy's asset scope admits every asset the target may be (fail closed)."""
    if policy.scope_tiers:
        tiers = {a.criticality for a in match.assets} or {match.criticality}
        if not tiers <= set(policy.scope_tiers):
            return False
    if policy.scope_groups:
        groups = {a.group for a in match.assets}
        if not groups or not groups <= set(policy.scope_groups):
            return False
    return True


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
    if identity is None:
        identity = target_identity(kind, target)
    # A replay is rare: insert first and let the unique (agent, key) constraint catch it,
    # rather than spend a look-up on every first submission.
    try:
        with transaction.atomic():
            proposal = _record_submission(
                agent=agent,
                api_key=api_key,
                kind=kind,
                target=target,
                identity=identity,
                params=params,
                confidence=confidence,
                rationale=rationale,
                evidence=evidence,
                severity=severity,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
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


def _record_submission(
    *,
    agent: Agent,
    api_key: ApiKey | None,
    kind: catalogue.ActionType,
    target: str,
    identity: targets.Identity,
    params: dict[str, Any],
    confidence: float,
    rationale: str,
    evidence: list[dict[str, Any]],
    severity: str,
    idempotency_key: str | None,
    request_hash: str,
) -> Proposal:
    now = timezone.now()
    context = routing_context(agent.pk)  # fresh: suspension and policy may have changed
    agent, policy = context.agent, context.policy
    match = inventory_match(identity)
    asset, criticality = match.asset, match.criticality
    level = policy.level_for(kind.name) if policy else 0
    evidence_kinds = {str(item.get("kind")) for item in evidence}
    in_scope = True
    connector_allowed = True
    evidence_complete = True
    if policy is not None:
        in_scope = _in_scope(policy, match)
        connector_allowed = not policy.allowed_connectors or (
            kind.connector in policy.allowed_connectors
        )
        evidence_complete = set(policy.required_evidence) <= evidence_kinds
    decision = route(
        RoutingInput(
            level=level,
            confidence=confidence,
            auto_threshold=policy.auto_threshold if policy else 1.0,
            review_threshold=policy.review_threshold if policy else 1.0,
            reversible=kind.reversible,
            criticality=criticality,
            in_scope=in_scope,
            connector_allowed=connector_allowed,
            evidence_complete=evidence_complete,
            emergency_stop=context.emergency_stop,
            suspended=agent.suspended,
        )
    )
    status = ProposalStatus(decision.outcome.value)
    proposal = Proposal(
        agent=agent,
        api_key=api_key,
        action=kind.name,
        target=target,
        target_canonical=identity.value,
        params=params,
        confidence=confidence,
        rationale=rationale,
        evidence=evidence,
        severity=severity,
        status=status,
        block_code=decision.code.value if decision.code else "",
        routing_explanation=decision.explanation[:300],
        required_approvals=decision.required_approvals,
        policy=policy,
        policy_version=policy.version if policy else None,
        asset=asset,
        criticality=criticality,
        risk=kind.risk,
        priority=priority_key(
            risk=kind.risk, criticality=criticality, confidence=confidence, created_at=now
        ),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
    )
    if status == ProposalStatus.PENDING and policy is not None:
        proposal.escalate_at = now + timedelta(minutes=policy.escalate_after_minutes)
        proposal.expires_at = now + timedelta(minutes=policy.expire_after_minutes)
    if status == ProposalStatus.AUTO_APPROVED:
        proposal.decided_at = now
    proposal.save(force_insert=True)
    # A new proposal has no decisions yet; readers of the returned row need no query for that.
    proposal._prefetched_objects_cache = {"decisions": Decision.objects.none()}
    data: dict[str, Any] = {
        "agent": agent.slug,
        "action": kind.name,
        "target": target,
        "target_canonical": identity.value,
        "confidence": confidence,
        "status": status.value,
        "policy_version": proposal.policy_version,
        "asset": asset.identifier if asset else None,
        "criticality": criticality,
        "explanation": proposal.routing_explanation,
    }
    if proposal.block_code:
        data["code"] = proposal.block_code
    if status == ProposalStatus.AUTO_APPROVED:
        execution = _execution_create(proposal, now)  # also caches proposal.execution
        data["execution"] = str(execution.id)
        _callback(proposal.id, "decided", agent=agent)
    else:
        Proposal.execution.related.set_cached_value(proposal, None)  # none exists yet
    log.record(
        event_type="proposal.submitted",
        actor=agent.slug,
        actor_type="agent",
        proposal_id=proposal.id,
        data=data,
    )
    if status in (ProposalStatus.PENDING, ProposalStatus.AUTO_APPROVED):
        _publish_committed(proposal)
    return proposal


def _execution_create(
    proposal: Proposal, now: Any, *, dispatch: bool = True, not_before: Any = None
) -> Execution:
    execution = Execution.objects.create(
        proposal=proposal,
        status=ExecutionStatus.QUEUED,
        idempotency_key=uuid.uuid4().hex,
        not_before=not_before,
        created_at=now,
        queued_at=now,
        updated_at=now,
    )
    if dispatch:
        _dispatch(execution.id)
    return execution


# --- decisions ------------------------------------------------------------------------------


def _locked_pending(proposal_id: uuid.UUID | str) -> Proposal:
    # The asset comes along: the answer shows it, even when it cannot be read after commit.
    proposal = (
        Proposal.objects.select_for_update(of=("self",))
        .select_related("agent", "asset")
        .filter(pk=proposal_id)
        .first()
    )
    if proposal is None:
        raise NotFound(f"No proposal {proposal_id}.")
    if proposal.status != ProposalStatus.PENDING:
        raise NotPending(_not_pending_detail(proposal), status_now=proposal.status)
    if proposal.expires_at and proposal.expires_at <= timezone.now():
        # The sweeper has not closed it yet (beat may be down); it is expired all the same.
        raise NotPending(
            f"This proposal expired at {proposal.expires_at:%Y-%m-%d %H:%M:%S %Z} and can no "
            "longer be decided.",
            status_now="expired",
        )
    Proposal.execution.related.set_cached_value(proposal, None)  # none while pending
    return proposal


def _not_pending_detail(proposal: Proposal) -> str:
    last = proposal.decisions.select_related("analyst").order_by("-created_at").first()
    if proposal.status in (ProposalStatus.APPROVED, ProposalStatus.REJECTED) and last:
        verb = "approved" if proposal.status == ProposalStatus.APPROVED else "rejected"
        return f"Already {verb} by {last.analyst.get_username()}."
    return f"This proposal is no longer pending: it is {proposal.get_status_display().lower()}."


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


def _check_may_decide(user: AbstractBaseUser) -> None:
    if not roles.can_decide(user):
        raise NotPermitted(
            "Only analysts, senior analysts and admins decide proposals and roll back actions.",
            code="not_an_analyst",
        )


def _finish_pending(
    proposal: Proposal,
    *,
    to: ProposalStatus,
    event_type: str,
    actor: str,
    actor_type: str,
    data: dict[str, Any],
    extra: dict[str, Any] | None = None,
    callback_delay: float = 0,
) -> Proposal:
    """Move a pending proposal to a final status: the one way a pending proposal leaves.

    (An approval undone within its window brings it back: see approval_undo.)
    """
    now = timezone.now()
    changes = {"status": to, "decided_at": now, **(extra or {})}
    updated = Proposal.objects.filter(pk=proposal.pk, status=ProposalStatus.PENDING).update(
        **changes
    )
    if not updated:
        proposal.refresh_from_db()
        raise NotPending(_not_pending_detail(proposal), status_now=proposal.status)
    for name, value in changes.items():
        setattr(proposal, name, value)
    log.record(
        event_type=event_type,
        actor=actor,
        actor_type=actor_type,
        proposal_id=proposal.id,
        data=data,
    )
    _publish_committed(proposal)
    _callback(
        proposal.id,
        "decided",
        agent=proposal.agent if Proposal.agent.is_cached(proposal) else None,
        countdown=callback_delay,
    )
    return proposal


@transaction.atomic
def proposal_approve(
    *,
    proposal_id: uuid.UUID | str,
    analyst: AbstractBaseUser,
    reason: str = "",
    seconds_on_card: Any = None,
) -> Proposal:
    _check_may_decide(analyst)
    reason = _text(reason, field="reason")
    proposal = _locked_pending(proposal_id)
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
    Decision.objects.create(
        proposal=proposal,
        analyst=analyst,
        verdict=Verdict.APPROVE,
        reason=reason,
        seconds_on_card=seconds,
        created_at=now,
    )
    approvals = proposal.approvals + 1
    data = {
        "verdict": "approve",
        "reason": reason,
        "approvals": approvals,
        "required_approvals": proposal.required_approvals,
        "seconds_on_card": seconds,
    }
    if not final:
        Proposal.objects.filter(pk=proposal.pk).update(approvals=approvals)
        proposal.approvals = approvals
        log.record(
            event_type="proposal.approval_recorded",
            actor=_username(analyst),
            proposal_id=proposal.id,
            data=data,
        )
        _publish_committed(proposal)
        return proposal
    # The undo window: the execution may not start before it ends (the claim checks
    # not_before, whatever message arrives), and its task is due the moment it ends.
    window = settings.APPROVAL_UNDO_SECONDS
    not_before = now + timedelta(seconds=window) if window else None
    execution = _execution_create(proposal, now, dispatch=False, not_before=not_before)
    hold_why: str | None = None
    # Registered before the approval's other after-commit work, so that a worker hears of it
    # first; called off if the execution is held below.
    _dispatch(execution.id, due=not_before, unless=lambda: hold_why is not None)
    data["execution"] = str(execution.id)
    if not_before is not None:
        data["undo_until"] = not_before
    approved = _finish_pending(
        proposal,
        to=ProposalStatus.APPROVED,
        event_type="proposal.approved",
        actor=_username(analyst),
        actor_type="user",
        data=data,
        extra={"approvals": approvals},
        # The agent hears of the approval once it can no longer be undone.
        callback_delay=window,
    )
    # With the stop on or the agent suspended nothing may start: the execution is held as soon
    # as it exists, not left queued for a worker's claim to hold. Read after the approval's
    # audit event, whose head lock orders this transaction against the stop's engage and
    # release (each records its own event): a stop that committed first is seen here; one
    # that commits later finds this execution queued, and the worker's claim holds it.
    hold_why = (
        "emergency stop"
        if emergency_stop_engaged()
        else "agent suspended"
        if Agent.objects.filter(pk=proposal.agent_id, suspended=True).exists()
        else None
    )
    if hold_why is not None:
        _hold(execution.pk, why=hold_why, locked=execution)
    return approved


@transaction.atomic
def proposal_reject(
    *,
    proposal_id: uuid.UUID | str,
    analyst: AbstractBaseUser,
    reason: str,
    seconds_on_card: Any = None,
) -> Proposal:
    _check_may_decide(analyst)
    reason = _text(reason, field="reason")
    if len(reason) < 3:
        raise InvalidInput(
            "A rejection needs a reason.", errors={"reason": ["Say why you reject it."]}
        )
    proposal = _locked_pending(proposal_id)
    if proposal.decisions.filter(analyst=analyst).exists():
        raise NotPermitted(
            "You already decided this proposal; a different analyst must decide the rest.",
            code="already_decided_by_you",
        )
    seconds = clamp_seconds_on_card(seconds_on_card)
    Decision.objects.create(
        proposal=proposal,
        analyst=analyst,
        verdict=Verdict.REJECT,
        reason=reason,
        seconds_on_card=seconds,
        created_at=timezone.now(),
    )
    return _finish_pending(
        proposal,
        to=ProposalStatus.REJECTED,
        event_type="proposal.rejected",
        actor=_username(analyst),
        actor_type="user",
        data={"verdict": "reject", "reason": reason, "seconds_on_card": seconds},
    )


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
    _check_may_decide(analyst)
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
    Proposal.execution.related.set_cached_value(proposal, None)
    log.record(
        event_type="proposal.approval_undone",
        actor=_username(analyst),
        proposal_id=proposal.id,
        data={
            "execution": str(execution.id),
            "execution_status": execution.status,
            "undo_until": execution.not_before,
            "seconds_left": round((execution.not_before - now).total_seconds(), 3),
            "approval": {
                "reason": decision.reason,
                "seconds_on_card": decision.seconds_on_card,
                "at": decision.created_at,
            },
            "approvals": approvals,
            "required_approvals": proposal.required_approvals,
        },
    )
    _publish_committed(proposal)
    # No callback: the agent hears of an approval only once its window is over (see
    # proposal_approve), and by then this one is gone.
    return proposal


@transaction.atomic
def proposal_withdraw(*, proposal_id: uuid.UUID | str, agent: Agent) -> Proposal:
    proposal = (
        Proposal.objects.select_related("agent", "asset")
        .filter(pk=proposal_id, agent=agent)
        .first()
    )
    if proposal is None:
        raise NotFound(f"No proposal {proposal_id}.")
    # Only a pending proposal is withdrawn, and it has no execution: the returned row is whole.
    Proposal.execution.related.set_cached_value(proposal, None)
    return _finish_pending(
        proposal,
        to=ProposalStatus.WITHDRAWN,
        event_type="proposal.withdrawn",
        actor=agent.slug,
        actor_type="agent",
        data={},
    )


@transaction.atomic
def proposal_expire(*, proposal_id: uuid.UUID | str) -> Proposal | None:
    """Close a pending proposal whose expires_at has passed; None if it no longer qualifies."""
    proposal = Proposal.objects.filter(
        pk=proposal_id, status=ProposalStatus.PENDING, expires_at__lte=timezone.now()
    ).first()
    if proposal is None:
        return None
    try:
        return _finish_pending(
            proposal,
            to=ProposalStatus.EXPIRED,
            event_type="proposal.expired",
            actor=SYSTEM,
            actor_type="system",
            data={"expires_at": proposal.expires_at, "approvals": proposal.approvals},
        )
    except NotPending:
        return None  # decided at the same moment; the decision stands


@transaction.atomic
def proposal_escalate(*, proposal_id: uuid.UUID | str) -> Proposal | None:
    """Mark an unanswered pending proposal as escalated and tell the senior analysts."""
    now = timezone.now()
    updated = Proposal.objects.filter(
        pk=proposal_id,
        status=ProposalStatus.PENDING,
        escalated_at__isnull=True,
        escalate_at__lte=now,
    ).update(escalated_at=now)
    if not updated:
        return None
    proposal = Proposal.objects.select_related("agent").get(pk=proposal_id)
    log.record(
        event_type="proposal.escalated",
        actor=SYSTEM,
        actor_type="system",
        proposal_id=proposal.id,
        data={"escalate_at": proposal.escalate_at, "approvals": proposal.approvals},
    )
    _publish_proposal(proposal.id)
    _after_commit(lambda: notify.escalated(proposal.id))
    return proposal


@transaction.atomic
def proposal_review_confirm(
    *, proposal_id: uuid.UUID | str, analyst: AbstractBaseUser, note: str = ""
) -> Proposal:
    """An analyst confirms, after the fact, an action that ran without approval."""
    _check_may_decide(analyst)
    note = _text(note, field="note")
    now = timezone.now()
    updated = Proposal.objects.filter(
        pk=proposal_id, status=ProposalStatus.AUTO_APPROVED, reviewed_at__isnull=True
    ).update(reviewed_by=analyst, reviewed_at=now)
    if not updated:
        raise WrongState("Only an auto-approved proposal not yet reviewed can be confirmed.")
    log.record(
        event_type="proposal.review_confirmed",
        actor=_username(analyst),
        proposal_id=proposal_id,
        data={"note": note},
    )
    _publish_proposal(uuid.UUID(str(proposal_id)))
    return Proposal.objects.get(pk=proposal_id)


# --- emergency stop and suspension ----------------------------------------------------------


def _hold(
    execution_id: uuid.UUID | str,
    *,
    why: str,
    actor: str = SYSTEM,
    actor_type: str = "system",
    locked: Execution | None = None,
) -> Execution | None:
    """queued → held, with its audit event: the one way an execution is held."""
    return _execution_move(
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


def _hold_queued(executions: Any, *, why: str, actor: str) -> list[str]:
    """Hold every queued execution of the set, each with its own audit event."""
    held = []
    for pk in executions.filter(status=ExecutionStatus.QUEUED).values_list("pk", flat=True):
        if _hold(pk, why=why, actor=actor, actor_type="user"):
            held.append(str(pk))
    return held


@transaction.atomic
def emergency_stop_engage(*, by: AbstractBaseUser, reason: str) -> EmergencyStop:
    if not roles.can_stop(by):
        raise NotPermitted("Only managers and admins can pull the emergency stop.")
    reason = _text(reason, field="reason")
    if not reason:
        raise InvalidInput("Say why you stop.", errors={"reason": ["A reason is required."]})
    stop, _ = EmergencyStop.objects.select_for_update().get_or_create(id=1)
    if stop.engaged:
        raise WrongState(f"The emergency stop is already engaged: {stop.reason}")
    stop.engaged = True
    stop.reason = reason
    stop.changed_by = by
    stop.changed_at = timezone.now()
    stop.save(update_fields=["engaged", "reason", "changed_by", "changed_at"])
    held = _hold_queued(Execution.objects.all(), why="emergency stop", actor=_username(by))
    log.record(
        event_type="emergency_stop.engaged",
        actor=_username(by),
        data={"reason": reason, "held_executions": held},
    )
    from . import live

    _after_commit(lambda: live.publish(live.stop_changed))
    return stop


@transaction.atomic
def emergency_stop_release(*, by: AbstractBaseUser, reason: str = "") -> EmergencyStop:
    if not roles.can_stop(by):
        raise NotPermitted("Only managers and admins can lift the emergency stop.")
    reason = _text(reason, field="reason")
    stop, _ = EmergencyStop.objects.select_for_update().get_or_create(id=1)
    if not stop.engaged:
        raise WrongState("The emergency stop is not engaged.")
    stop.engaged = False
    stop.reason = reason
    stop.changed_by = by
    stop.changed_at = timezone.now()
    stop.save(update_fields=["engaged", "reason", "changed_by", "changed_at"])
    log.record(
        event_type="emergency_stop.released",
        actor=_username(by),
        data={"reason": stop.reason},
    )
    from . import live

    _after_commit(lambda: live.publish(live.stop_changed))
    return stop


@transaction.atomic
def agent_suspend(*, agent: Agent, by: AbstractBaseUser, reason: str) -> Agent:
    if not roles.can_suspend_agent(by):
        raise NotPermitted("Only senior analysts, managers and admins can suspend an agent.")
    reason = _text(reason, field="reason")
    if not reason:
        raise InvalidInput(
            "A suspension needs a reason.", errors={"reason": ["Say why you suspend it."]}
        )
    # Taking the stop row's lock orders this against execution claims (see execution_claim).
    EmergencyStop.objects.select_for_update().get_or_create(id=1)
    updated = Agent.objects.filter(pk=agent.pk, suspended=False).update(
        suspended=True, suspended_reason=reason
    )
    if not updated:
        raise WrongState(f"{agent.slug} is already suspended.")
    held = _hold_queued(
        Execution.objects.filter(proposal__agent=agent),
        why="agent suspended",
        actor=_username(by),
    )
    log.record(
        event_type="agent.suspended",
        actor=_username(by),
        data={"agent": agent.slug, "reason": reason, "held_executions": held},
    )
    return Agent.objects.get(pk=agent.pk)


@transaction.atomic
def agent_resume(*, agent: Agent, by: AbstractBaseUser) -> Agent:
    if not roles.can_manage_agents(by) and not roles.can_stop(by):
        raise NotPermitted("Only managers and admins can resume an agent.")
    updated = Agent.objects.filter(pk=agent.pk, suspended=True).update(
        suspended=False, suspended_reason=""
    )
    if not updated:
        raise WrongState(f"{agent.slug} is not suspended.")
    log.record(event_type="agent.resumed", actor=_username(by), data={"agent": agent.slug})
    return Agent.objects.get(pk=agent.pk)


# --- executions -----------------------------------------------------------------------------


def _execution_move(
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

    (The claim, queued → running, is the one other: the same compare-and-set written as a
    single statement in _claim_queued, followed by the same _execution_moved.)

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
    return _execution_moved(
        execution,
        event_type=event_type,
        actor=actor,
        actor_type=actor_type,
        data=data,
        publish=publish,
    )


def _execution_moved(
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
        _publish_proposal(execution.proposal_id)
    return execution


@dataclass(frozen=True)
class Claim:
    execution: Execution
    attempt: int
    rollback: bool


class _StopRowAppeared(Exception):
    """A claim went through without the stop row's lock: see _claim_queued."""


def execution_claim(*, execution_id: uuid.UUID | str, announce: bool = True) -> Claim | None:
    """A worker takes a queued execution: queued → running, attempt + 1, with a lease.

    With the emergency stop engaged or the agent suspended the execution is held instead.
    announce=False leaves the live update of the start to the caller (see execution_run).
    """
    try:
        return _execution_claim(execution_id=execution_id, announce=announce)
    except _StopRowAppeared:
        # Rolled back; the row is committed now, so this attempt takes its lock.
        return _execution_claim(execution_id=execution_id, announce=announce)


@transaction.atomic
def _execution_claim(*, execution_id: uuid.UUID | str, announce: bool) -> Claim | None:
    now = timezone.now()
    stopped, execution = _claim_queued(execution_id, now)
    if execution is not None:
        moved = _execution_moved(
            execution,
            event_type="execution.started",
            data={"attempt": execution.attempts},
            publish=announce,
        )
        return Claim(moved, execution.attempts, rollback=False)
    # Not claimed: say why, and hold the execution if the stop or a suspension is the reason.
    execution = (
        Execution.objects.select_for_update(of=("self",))
        .select_related("proposal__agent")
        .filter(pk=execution_id)
        .first()
    )
    if execution is None or execution.status != ExecutionStatus.QUEUED:
        return None
    if execution.not_before and execution.not_before > now:
        # Early: an approval's undo window or a retry's backoff is not over. Its own delayed
        # task is due then; this message, come early (a re-dispatch, a clock a little ahead),
        # is sent again for that moment instead of leaving the execution to the sweeper.
        _dispatch(execution.pk, due=execution.not_before)
        return None
    if stopped or execution.proposal.agent.suspended:
        _hold(
            execution_id,
            why="emergency stop" if stopped else "agent suspended",
            locked=execution,
        )
    # Otherwise the agent was resumed between the two statements: the sweeper dispatches it.
    return None


# The claim in three statements sent together (one round trip on PostgreSQL, whose pipeline
# still runs them in order, each on a fresh snapshot). The first takes the stop row's lock,
# which orders claims against emergency_stop_engage: an execution either started before the
# stop committed, or the second statement sees the stop and leaves it queued for the caller to
# hold. The second is the compare-and-set; the third loads the proposal for the call.
# (The stop row must exist for a claim: the first claim on a fresh database creates it, with
# its lock, before trying again.)
_STOP_SQL = "SELECT engaged FROM agents_emergencystop WHERE id = 1"
_CLAIM_SQL = """
UPDATE approvals_execution
   SET status = %s, attempts = attempts + 1, lease_until = %s, started_at = %s, updated_at = %s
 WHERE id = %s AND status = %s AND (not_before IS NULL OR not_before <= %s)
   AND EXISTS (SELECT 1 FROM agents_emergencystop WHERE id = 1 AND NOT engaged)
   AND NOT EXISTS (
       SELECT 1 FROM approvals_proposal AS p JOIN agents_agent AS a ON a.id = p.agent_id
        WHERE p.id = approvals_execution.proposal_id AND a.suspended
   )
RETURNING {execution}
"""
_PROPOSAL_SQL = """
SELECT {proposal} FROM approvals_proposal
 WHERE id = (SELECT proposal_id FROM approvals_execution WHERE id = %s)
"""


def _claim_queued(execution_id: uuid.UUID | str, now: Any) -> tuple[bool, Execution | None]:
    """(whether the stop is engaged, the execution if it went queued → running).

    Plain statements sent in one go instead of a locking read, an update and the ORM building
    each: this runs between an approval and its action on every execution.
    """
    connection = transaction.get_connection()
    ops = connection.ops
    when = ops.adapt_datetimefield_value(now)
    lease = ops.adapt_datetimefield_value(now + timedelta(seconds=settings.EXECUTION_LEASE_SECONDS))
    key = Execution._meta.pk.get_db_prep_value(execution_id, connection)
    connection.ensure_connection()
    together = getattr(connection.connection, "pipeline", contextlib.nullcontext)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with (
        connection.cursor() as stop,
        connection.cursor() as claim,
        connection.cursor() as proposal,
    ):
        # Errors surface when the pipeline ends: translated there as Django's own would be.
        with connection.wrap_database_errors, together():
            stop.execute(_STOP_SQL + lock)
            claim.execute(
                _CLAIM_SQL.format(execution=rows.columns(Execution, connection)),
                [ExecutionStatus.RUNNING, lease, when, when, key, ExecutionStatus.QUEUED, when],
            )
            proposal.execute(
                _PROPOSAL_SQL.format(proposal=rows.columns(Proposal, connection)), [key]
            )
        stop_row, claimed, proposal_row = stop.fetchone(), claim.fetchone(), proposal.fetchone()
    if stop_row is None:
        if claimed is not None:
            # Another claim committed the row between the first two statements (each reads
            # afresh): the UPDATE saw it, the locking read did not, so this claim holds no
            # lock against a stop. Start over rather than run unordered.
            raise _StopRowAppeared
        # A fresh database: nothing was claimed (the UPDATE needs the row). Create the row,
        # holding its lock, and claim with it.
        _stop_engaged_locked()
        return _claim_queued(execution_id, now)
    stopped = bool(stop_row[0])
    if claimed is None:
        return stopped, None
    execution = rows.instance(Execution, claimed, connection)
    Execution.proposal.field.set_cached_value(
        execution, rows.instance(Proposal, proposal_row, connection)
    )
    return stopped, execution


@transaction.atomic
def rollback_claim(*, execution_id: uuid.UUID | str, announce: bool = True) -> Claim | None:
    # Ordered against the stop like execution_claim; a rollback waiting here while the stop is
    # on stays rolling_back and the sweeper dispatches it again once the stop is lifted.
    if _stop_engaged_locked():
        return None
    now = timezone.now()
    execution = (
        Execution.objects.select_for_update(of=("self",))
        .select_related("proposal")
        .filter(pk=execution_id)
        .first()
    )
    if execution is None or execution.status != ExecutionStatus.ROLLING_BACK:
        return None
    if execution.lease_until and execution.lease_until > now:
        return None  # another worker holds it
    if execution.not_before and execution.not_before > now:
        return None
    if execution.rollback_attempts >= settings.EXECUTION_MAX_ATTEMPTS:
        # Only lost attempts get here: a transient error on the last one settles as failed.
        _give_up_lost(execution_id, rollback=True, guard=None, now=now)
        return None
    attempt = execution.rollback_attempts + 1
    moved = _execution_move(
        execution_id,
        allowed=[ExecutionStatus.ROLLING_BACK],
        to=ExecutionStatus.ROLLING_BACK,
        event_type="execution.rollback_started",
        changes={
            "rollback_attempts": attempt,
            "lease_until": now + timedelta(seconds=settings.EXECUTION_LEASE_SECONDS),
        },
        data={"attempt": attempt},
        publish=announce,
        locked=execution,
    )
    return Claim(moved, attempt, rollback=True) if moved else None


def backoff_seconds(attempt: int) -> float:
    base = settings.EXECUTION_BACKOFF_BASE_SECONDS
    return min(base * (2 ** (attempt - 1)), settings.EXECUTION_BACKOFF_MAX_SECONDS)


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
    now = timezone.now()
    timing = {} if connector_seconds is None else {"connector_seconds": round(connector_seconds, 6)}
    running = ExecutionStatus.ROLLING_BACK if claim.rollback else ExecutionStatus.RUNNING
    counter = "rollback_attempts" if claim.rollback else "attempts"
    guard = Q(**{counter: claim.attempt})
    prefix = "execution.rollback_" if claim.rollback else "execution."
    if outcome == "succeeded":
        to = ExecutionStatus.ROLLED_BACK if claim.rollback else ExecutionStatus.SUCCEEDED
        changes: dict[str, Any] = {"lease_until": None, "finished_at": now, "error": ""}
        if claim.rollback:
            changes["result"] = {**(claim.execution.result or {}), "rollback": result}
        else:
            changes["result"] = result
        moved = _execution_move(
            claim.execution.pk,
            allowed=[running],
            to=to,
            guard=guard,
            changes=changes,
            event_type=f"{prefix}succeeded",
            data={"attempt": claim.attempt, "result": result, **timing},
        )
        if moved:
            _callback(moved.proposal_id, "rolled_back" if claim.rollback else "completed")
        return moved
    if outcome == "transient" and claim.attempt < settings.EXECUTION_MAX_ATTEMPTS:
        delay = backoff_seconds(claim.attempt)
        back_to = ExecutionStatus.ROLLING_BACK if claim.rollback else ExecutionStatus.QUEUED
        moved = _execution_move(
            claim.execution.pk,
            allowed=[running],
            to=back_to,
            guard=guard,
            changes={
                "lease_until": None,
                "not_before": now + timedelta(seconds=delay),
                "queued_at": now,
                "error": error,
            },
            event_type=f"{prefix}retry_scheduled",
            data={
                "attempt": claim.attempt,
                "error": error,
                "retry_in_seconds": delay,
                **timing,
            },
        )
        if moved:
            _dispatch(moved.pk, rollback=claim.rollback, countdown=delay)
        return moved
    to = ExecutionStatus.ROLLBACK_FAILED if claim.rollback else ExecutionStatus.FAILED
    if outcome == "transient":
        error = f"{error} (gave up after {claim.attempt} attempts)"
    moved = _execution_move(
        claim.execution.pk,
        allowed=[running],
        to=to,
        guard=guard,
        changes={"lease_until": None, "finished_at": now, "error": error},
        event_type=f"{prefix}failed",
        data={"attempt": claim.attempt, "error": error, **timing},
    )
    if moved:
        _after_commit(lambda: notify.execution_failed(moved.pk))
        _callback(moved.proposal_id, "rollback_failed" if claim.rollback else "failed")
    return moved


# A connector call shorter than this goes from queued to its result on the consoles without a
# "running" frame in between: nobody could read it, and rendering it would slow the call.
ANNOUNCE_RUNNING_AFTER_SECONDS = 0.05


def execution_run(*, execution_id: uuid.UUID | str, rollback: bool = False) -> Execution | None:
    """Claim, call the connector outside any transaction, and settle. Used by the worker."""
    claim = (rollback_claim if rollback else execution_claim)(
        execution_id=execution_id, announce=False
    )
    if claim is None:
        return None
    # Rendering the "running" card takes longer than a fast connector call; it must not delay
    # the action, so it runs beside a call that takes a while and not at all for a quick one.
    from . import live

    announcing = live.announce_later(
        ANNOUNCE_RUNNING_AFTER_SECONDS, live.proposal_changed, claim.execution.proposal_id
    )
    proposal = claim.execution.proposal
    key = claim.execution.idempotency_key + (":undo" if rollback else "")
    outcome, result, error = "succeeded", None, ""
    started = time.monotonic()
    try:
        if rollback:
            result = connectors.undo(
                action=proposal.action,
                target=proposal.target_canonical or proposal.target,
                idempotency_key=key,
                original_key=claim.execution.idempotency_key,
            )
        else:
            result = connectors.perform(
                action=proposal.action,
                target=proposal.target_canonical or proposal.target,
                params=proposal.params,
                idempotency_key=key,
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
def execution_confirm_held(
    *, execution_id: uuid.UUID | str, analyst: AbstractBaseUser
) -> Execution:
    """After a stop or suspension, an analyst re-confirms a held execution: held → queued."""
    _check_may_decide(analyst)
    if emergency_stop_engaged():
        raise WrongState("The emergency stop is still engaged; lift it first.")
    execution = Execution.objects.select_related("proposal__agent").filter(pk=execution_id).first()
    if execution is None:
        raise NotFound(f"No execution {execution_id}.")
    if execution.proposal.agent.suspended:
        raise WrongState(f"The agent {execution.proposal.agent.slug} is still suspended.")
    moved = _execution_move(
        execution_id,
        allowed=[ExecutionStatus.HELD],
        to=ExecutionStatus.QUEUED,
        event_type="execution.released",
        actor=_username(analyst),
        actor_type="user",
        changes={"queued_at": timezone.now(), "not_before": None},
    )
    if moved is None:
        raise WrongState("This execution is not held.")
    _dispatch(moved.pk)
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
    _check_may_decide(analyst)
    reason = _text(reason, field="reason")
    if len(reason) < 3:
        # Undoing containment is a decision like a rejection: it needs its reason on record.
        raise InvalidInput(
            "A rollback needs a reason.", errors={"reason": ["Say why you roll it back."]}
        )
    lookup = {"pk": execution_id} if execution_id else {"proposal_id": proposal_id}
    execution = Execution.objects.select_related("proposal").filter(**lookup).first()
    if execution is None:
        raise WrongState("There is no execution to roll back.")
    execution_id = execution.pk
    kind = catalogue.get(execution.proposal.action)
    if kind is None or not kind.reversible:
        raise WrongState(f"{execution.proposal.action} cannot be rolled back.")
    if emergency_stop_engaged():
        raise WrongState("The emergency stop is engaged: nothing runs, rollbacks included.")
    moved = _execution_move(
        execution_id,
        allowed=[ExecutionStatus.SUCCEEDED],
        to=ExecutionStatus.ROLLING_BACK,
        event_type="execution.rollback_requested",
        actor=_username(analyst),
        actor_type="user",
        changes={"lease_until": None, "not_before": None, "queued_at": timezone.now()},
        data={"reason": reason, "undo": kind.undo},
    )
    if moved is None:
        raise WrongState("Only a succeeded execution can be rolled back.")
    _dispatch(moved.pk, rollback=True)
    return moved


@transaction.atomic
def execution_requeue_expired(*, execution_id: uuid.UUID | str) -> Execution | None:
    """The sweeper's recovery: a running execution whose lease ran out (its worker died)."""
    now = timezone.now()
    # A lost attempt counts like a failed one: an action that kills or hangs its worker every
    # time must end failed and reported, not go round forever.
    exhausted = Q(lease_until__lt=now, attempts__gte=settings.EXECUTION_MAX_ATTEMPTS)
    failed = _give_up_lost(execution_id, rollback=False, guard=exhausted, now=now)
    if failed:
        return failed
    moved = _execution_move(
        execution_id,
        allowed=[ExecutionStatus.RUNNING],
        to=ExecutionStatus.QUEUED,
        guard=Q(lease_until__lt=now),
        event_type="execution.requeued",
        changes={"lease_until": None, "queued_at": now, "not_before": None},
        data={"why": "lease expired: the worker stopped answering"},
    )
    if moved:
        _dispatch(moved.pk)
    return moved


def _give_up_lost(
    execution_id: uuid.UUID | str, *, rollback: bool, guard: Q | None, now: Any
) -> Execution | None:
    """Fail an execution whose attempts were all used up by workers that died or hung."""
    error = (
        f"the worker stopped answering (gave up after {settings.EXECUTION_MAX_ATTEMPTS} attempts)"
    )
    moved = _execution_move(
        execution_id,
        allowed=[ExecutionStatus.ROLLING_BACK if rollback else ExecutionStatus.RUNNING],
        to=ExecutionStatus.ROLLBACK_FAILED if rollback else ExecutionStatus.FAILED,
        guard=guard,
        event_type="execution.rollback_failed" if rollback else "execution.failed",
        changes={"lease_until": None, "finished_at": now, "error": error},
        data={"error": error},
    )
    if moved:
        _after_commit(lambda: notify.execution_failed(moved.pk))
        _callback(moved.proposal_id, "rollback_failed" if rollback else "failed")
    return moved


@dataclass(frozen=True)
class SweepReport:
    requeued: int
    redispatched: int
    expired: int
    escalated: int


def sweep() -> SweepReport:
    """Beat's periodic pass: recover lost executions, expire and escalate proposals."""
    from . import tasks

    now = timezone.now()
    stale = now - timedelta(seconds=settings.EXECUTION_QUEUED_STALE_SECONDS)
    requeued = 0
    for pk in Execution.objects.filter(
        status=ExecutionStatus.RUNNING, lease_until__lt=now
    ).values_list("pk", flat=True):
        moved = execution_requeue_expired(execution_id=pk)
        requeued += moved is not None and moved.status == ExecutionStatus.QUEUED
    # Queued (or rolling back) for longer than the bound and not waiting out a backoff: the
    # task was lost between commit and broker, or in a broker restart. Dispatching again is
    # safe: a claim is a compare-and-set and the connector call is idempotent.
    redispatched = 0
    lost = Execution.objects.filter(
        Q(status=ExecutionStatus.QUEUED)
        | Q(status=ExecutionStatus.ROLLING_BACK)
        & (Q(lease_until__isnull=True) | Q(lease_until__lt=now)),
        queued_at__lt=stale,
    ).filter(Q(not_before__isnull=True) | Q(not_before__lt=stale))
    for pk, status in lost.values_list("pk", "status"):
        # Bump queued_at so a healthy but busy queue is not flooded with duplicates.
        Execution.objects.filter(pk=pk, status=status).update(queued_at=now)
        task = tasks.run_rollback if status == ExecutionStatus.ROLLING_BACK else tasks.run_execution
        try:
            task.delay(str(pk))
            redispatched += 1
        except Exception:  # broker still down: the next sweep tries again
            logger.warning("could not re-dispatch execution %s", pk, exc_info=True)
            break
    expired = 0
    for pk in Proposal.objects.filter(
        status=ProposalStatus.PENDING, expires_at__lte=now
    ).values_list("pk", flat=True):
        expired += proposal_expire(proposal_id=pk) is not None
    escalated = 0
    for pk in Proposal.objects.filter(
        status=ProposalStatus.PENDING, escalated_at__isnull=True, escalate_at__lte=now
    ).values_list("pk", flat=True):
        escalated += proposal_escalate(proposal_id=pk) is not None
    return SweepReport(requeued, redispatched, expired, escalated)
