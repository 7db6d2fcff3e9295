"""How a pending proposal closes without an analyst's verdict: the agent withdraws it, it
expires, it is escalated (and the seniors get one digest per window), or a senior analyst, a
manager or an admin clears a flooding agent's queue in one action."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from audit import events, log
from audit.models import AuditEvent
from soc_console import roles
from soc_console.errors import DomainError, NotFound, NotPending, NotPermitted

from .. import live, notify, sql
from ..models import Proposal, ProposalStatus
from .attention import check_expired
from .pending import finish_pending
from .shared import SYSTEM, after_commit, publish_proposal, reason_given, username


@transaction.atomic
def proposal_withdraw(
    *,
    proposal_id: uuid.UUID | str,
    agent: Agent,
    by: AbstractBaseUser | None = None,
    reason: str = "",
) -> Proposal:
    """The agent takes its proposal back; or `by`, someone clearing a flooding agent's queue on
    its behalf (see agent_pending_clear), with the reason on record."""
    proposal = (
        Proposal.objects.select_related("agent", "asset")
        .filter(pk=proposal_id, agent=agent)
        .first()
    )
    if proposal is None:
        raise NotFound(f"No proposal {proposal_id}.")
    # Only a pending proposal is withdrawn, and it has no execution: the returned row is whole.
    sql.no_execution_yet(proposal)
    if by is None:
        return finish_pending(
            proposal,
            to=ProposalStatus.WITHDRAWN,
            event_type="proposal.withdrawn",
            actor=agent.slug,
            actor_type="agent",
            data={},
        )
    return finish_pending(
        proposal,
        to=ProposalStatus.WITHDRAWN,
        event_type="proposal.withdrawn",
        actor=username(by),
        actor_type="user",
        data={"reason": reason, "on_behalf_of": agent.slug},
    )


@transaction.atomic
def proposal_expire(*, proposal_id: uuid.UUID | str) -> Proposal | None:
    """Close a pending proposal whose expires_at has passed; None if it no longer qualifies."""
    proposal = Proposal.objects.filter(
        pk=proposal_id, status=ProposalStatus.PENDING, expires_at__lte=timezone.now()
    ).first()
    if proposal is None:
        return None
    data = events.expiry(expires_at=proposal.expires_at, approvals=proposal.approvals)
    if proposal.synthetic:
        data["attention_check"] = {"outcome": "expired"}
    try:
        expired = finish_pending(
            proposal,
            to=ProposalStatus.EXPIRED,
            event_type=events.EXPIRED,
            actor=SYSTEM,
            actor_type="system",
            data=data,
        )
    except NotPending:
        return None  # decided at the same moment; the decision stands
    if expired.synthetic:
        # After the proposal's row, as a decision takes them: the same order, no deadlock.
        check_expired(expired)
    return expired


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
        event_type=events.ESCALATED,
        actor=SYSTEM,
        actor_type="system",
        proposal_id=proposal.id,
        data=events.escalation(escalate_at=proposal.escalate_at, approvals=proposal.approvals),
    )
    publish_proposal(proposal.id)
    # No mail here: the sweep sends one digest per window (escalation_digest_send).
    return proposal


DIGEST_EVENT = "escalation.digest_sent"


@transaction.atomic
def escalation_digest_send(*, now: datetime | None = None) -> int:
    """Mail each senior analyst one list of the proposals escalated since the last digest, at
    most once every ESCALATION_DIGEST_MINUTES; returns how many proposals it listed.

    The last digest's audit event is the watermark: it says until when escalations were told
    and to whom, so a restart neither repeats nor loses a window. The first escalation after a
    quiet spell goes out at the next sweep; the ones after it wait for the window to end.
    """
    now = now or timezone.now()
    # Two sweeps running at once must not both send the same window.
    sql.digest_lock()
    last = AuditEvent.objects.filter(event_type=DIGEST_EVENT).order_by("-seq").first()
    window = timedelta(minutes=settings.ESCALATION_DIGEST_MINUTES)
    if last is not None and now - last.at < window:
        return 0
    escalated = Proposal.objects.filter(
        status=ProposalStatus.PENDING, escalated_at__isnull=False, escalated_at__lte=now
    )
    if last is not None:
        escalated = escalated.filter(escalated_at__gt=last.data["until"])
    ids = list(escalated.order_by("escalated_at").values_list("pk", flat=True))
    if not ids:
        return 0
    recipients = notify.senior_recipients()
    log.record(
        event_type=DIGEST_EVENT,
        actor=SYSTEM,
        actor_type="system",
        data={
            "until": now.isoformat(),
            "proposals": [str(pk) for pk in ids],
            "recipients": recipients,
        },
    )
    after_commit(lambda: notify.escalation_digest(ids, recipients))
    return len(ids)


@dataclass(frozen=True)
class ClearReport:
    """What one clearing of an agent's queue did: how many proposals left it, and the ones
    refused with why (decided or withdrawn a moment earlier)."""

    cleared: int
    refused: dict[str, str]


def agent_pending_clear(*, agent: Agent, by: AbstractBaseUser, reason: str) -> ClearReport:
    """Withdraw every pending proposal of the agent on its behalf, with one reason: one action
    for a senior analyst, a manager or an admin facing a flood.

    Each proposal goes through proposal_withdraw, in its own transaction, with its own audit
    event naming who cleared it and why. Nobody judged these proposals one by one, so none is
    an analyst's decision: no demotion rule fires, the reports count them as withdrawn before a
    decision, and an agent's track record is what analysts decided on its proposals. Whoever
    clears (a senior analyst, a manager or an admin) clears the same way.
    """
    if not roles.can_suspend_agent(by):
        raise NotPermitted(
            "Only senior analysts, managers and admins can clear an agent's proposals."
        )
    reason = reason_given(
        reason,
        refusal="Clearing an agent's proposals needs a reason.",
        hint="Say why they are all withdrawn.",
    )
    cleared = 0
    refused: dict[str, str] = {}
    ids = Proposal.objects.filter(agent=agent, status=ProposalStatus.PENDING).values_list(
        "pk", flat=True
    )
    for pk in list(ids.order_by("created_at")):
        try:
            proposal_withdraw(proposal_id=pk, agent=agent, by=by, reason=reason)
        except DomainError as exc:
            refused[str(pk)] = exc.detail
        else:
            cleared += 1
    live.publish(live.suspended_notice_changed)
    return ClearReport(cleared=cleared, refused=refused)
