"""Reads over the audit log, decisions and executions for the audit page and the reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from approvals.models import ExecutionStatus, Proposal, ProposalStatus

from .models import AuditEvent, AuditHead, VerificationRun


def audit_events(
    *,
    actor: str | None = None,
    event_type: str | None = None,
    proposal_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if actor:
        qs = qs.filter(actor=actor)
    if event_type:
        qs = qs.filter(event_type=event_type)
    if proposal_id:
        qs = qs.filter(proposal_id=proposal_id)
    if since:
        qs = qs.filter(at__gte=since)
    if until:
        qs = qs.filter(at__lt=until)
    return qs


def chain_head() -> AuditHead | None:
    return AuditHead.objects.filter(id=1).first()


def last_verification() -> VerificationRun | None:
    return VerificationRun.objects.order_by("-at").first()


def event_types() -> list[str]:
    return list(
        AuditEvent.objects.order_by("event_type").values_list("event_type", flat=True).distinct()
    )


def agent_track_records() -> dict[int, dict[str, Any]]:
    rows = Proposal.objects.values("agent_id").annotate(
        proposals=Count("id"),
        approved=Count("id", filter=Q(status=ProposalStatus.APPROVED)),
        rejected=Count("id", filter=Q(status=ProposalStatus.REJECTED)),
        failed=Count("id", filter=Q(execution__status=ExecutionStatus.FAILED)),
        rolled_back=Count("id", filter=Q(execution__status=ExecutionStatus.ROLLED_BACK)),
    )
    return {row["agent_id"]: row for row in rows}
