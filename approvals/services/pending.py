"""A pending proposal: read under its lock, and the one way it leaves pending.

Shared by the decisions (approve, reject) and the closings (withdraw, expire) in decisions.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from audit import log
from soc_console.errors import NotFound, NotPending

from .. import sql
from ..models import Proposal, ProposalStatus
from .shared import callback, publish_committed, rollup_due


def locked_pending(proposal_id: uuid.UUID | str) -> Proposal:
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
        raise NotPending(not_pending_detail(proposal), status_now=proposal.status)
    if proposal.expires_at and proposal.expires_at <= timezone.now():
        # The sweeper has not closed it yet (beat may be down); it is expired all the same.
        raise NotPending(
            f"This proposal expired at {proposal.expires_at:%Y-%m-%d %H:%M:%S %Z} and can no "
            "longer be decided.",
            status_now="expired",
        )
    sql.no_execution_yet(proposal)  # none while pending
    return proposal


def not_pending_detail(proposal: Proposal) -> str:
    last = proposal.decisions.select_related("analyst").order_by("-created_at").first()
    if proposal.status in (ProposalStatus.APPROVED, ProposalStatus.REJECTED) and last:
        verb = "approved" if proposal.status == ProposalStatus.APPROVED else "rejected"
        return f"Already {verb} by {last.analyst.get_username()}."
    return f"This proposal is no longer pending: it is {proposal.get_status_display().lower()}."


def finish_pending(
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
        raise NotPending(not_pending_detail(proposal), status_now=proposal.status)
    for name, value in changes.items():
        setattr(proposal, name, value)
    if proposal.synthetic:
        data = {**data, "synthetic": True}  # an attention check, marked in every event
    log.record(
        event_type=event_type,
        actor=actor,
        actor_type=actor_type,
        proposal_id=proposal.id,
        data=data,
    )
    publish_committed(proposal)
    rollup_due(proposal.created_at, now)
    callback(
        proposal.id,
        "decided",
        agent=sql.agent_if_loaded(proposal),
        countdown=callback_delay,
    )
    return proposal
