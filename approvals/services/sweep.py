"""Beat's periodic pass: recover lost executions, expire and escalate proposals."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .. import enqueue, sql
from ..models import Execution, ExecutionStatus, Proposal, ProposalStatus
from .closing import escalation_digest_send, proposal_escalate, proposal_expire
from .executions import execution_requeue_expired

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    requeued: int
    redispatched: int
    expired: int
    escalated: int
    digested: int = 0  # escalated proposals listed in the digest this pass mailed
    skipped: bool = False  # another sweep was running: this one did nothing


def sweep() -> SweepReport:
    """Beat's periodic pass: recover lost executions, expire and escalate proposals.

    One at a time (sql.sweep_lock): a sweep that finds another running skips its turn.
    """
    with sql.sweep_lock() as held:
        if not held:
            logger.info("sweep skipped: another sweep is running")
            return SweepReport(0, 0, 0, 0, skipped=True)
        return _sweep()


def _sweep() -> SweepReport:
    now = timezone.now()
    requeued = 0
    for pk in Execution.objects.filter(
        status=ExecutionStatus.RUNNING, lease_until__lt=now
    ).values_list("pk", flat=True):
        moved = execution_requeue_expired(execution_id=pk)
        requeued += moved is not None and moved.status == ExecutionStatus.QUEUED
    redispatched = _redispatch_lost(now)
    expired = 0
    for pk in Proposal.objects.filter(
        status=ProposalStatus.PENDING, expires_at__lte=now
    ).values_list("pk", flat=True):
        expired += proposal_expire(proposal_id=pk) is not None
    escalated = 0
    for pk in Proposal.objects.filter(
        status=ProposalStatus.PENDING,
        escalated_at__isnull=True,
        escalate_at__lte=now,
        synthetic=False,  # an attention check is not escalated to the seniors
    ).values_list("pk", flat=True):
        escalated += proposal_escalate(proposal_id=pk) is not None
    digested = escalation_digest_send(now=timezone.now())
    return SweepReport(requeued, redispatched, expired, escalated, digested)


def _redispatch_lost(now: datetime) -> int:
    """Send again the task of every execution queued (or rolling back) for longer than the
    bound and not waiting out a backoff: it was lost between commit and broker, or in a
    broker restart. Dispatching again is safe: a claim is a compare-and-set and the connector
    call is idempotent."""
    stale = now - timedelta(seconds=settings.EXECUTION_QUEUED_STALE_SECONDS)
    lost = Execution.objects.filter(
        Q(status=ExecutionStatus.QUEUED)
        | Q(status=ExecutionStatus.ROLLING_BACK)
        & (Q(lease_until__isnull=True) | Q(lease_until__lt=now)),
        queued_at__lt=stale,
    ).filter(Q(not_before__isnull=True) | Q(not_before__lt=stale))
    redispatched = 0
    for pk, status, queued_at in lost.values_list("pk", "status", "queued_at"):
        # Bump queued_at so a healthy but busy queue is not flooded with duplicates; a
        # compare-and-set, so that of two sweeps that found it lost, one sends it.
        if not Execution.objects.filter(pk=pk, status=status, queued_at=queued_at).update(
            queued_at=now
        ):
            continue
        rollback = status == ExecutionStatus.ROLLING_BACK
        try:
            enqueue.send(enqueue.RUN_ROLLBACK if rollback else enqueue.RUN_EXECUTION, str(pk))
            redispatched += 1
        except Exception:  # broker still down: the next sweep tries again
            logger.warning("could not re-dispatch execution %s", pk, exc_info=True)
            break
    return redispatched
