"""The other shared reads: counters, work lists, a proposal's page and timeline, the routed
pages."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from agents import catalogue, demotion
from agents.models import EmergencyStop
from audit.models import AuditEvent

from .. import sql
from ..models import (
    Decision,
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    listed_agents,
)
from .cards import QUEUE_ORDER
from .payloads import execution_of, proposals_with_details


@dataclass(frozen=True)
class Counters:
    pending: int
    escalated: int
    awaiting_second: int
    held: int
    unreviewed_auto: int
    failed: int


def queue_counters() -> Counters:
    """The top bar's counts in one statement (approvals.sql says why it is written by hand)."""
    return Counters(*sql.counters())


@dataclass(frozen=True)
class SuspendedAgent:
    """A suspended agent whose proposals still wait in the queue (the queue's notice)."""

    slug: str
    reason: str
    pending: int


def suspended_agents_pending() -> list[SuspendedAgent]:
    """Suspended agents with pending proposals: usually none, and then one indexed query."""
    rows = (
        Proposal.objects.filter(status=ProposalStatus.PENDING, agent__suspended=True)
        .values("agent__slug", "agent__suspended_reason")
        .annotate(pending=Count("pk"))
        .order_by("agent__slug")
    )
    return [
        SuspendedAgent(row["agent__slug"], row["agent__suspended_reason"], row["pending"])
        for row in rows
    ]


def pending_by_agent() -> dict[int, int]:
    """Each agent's pending proposals (the agents page's clear action)."""
    rows = (
        Proposal.objects.filter(status=ProposalStatus.PENDING)
        .values("agent_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["agent_id"]: row["n"] for row in rows}


def pending_on_page_of(agent_id: int) -> list[uuid.UUID]:
    """The agent's pending proposals among the queue page's: the cards every console shows."""
    page = (
        Proposal.objects.filter(status=ProposalStatus.PENDING)
        .order_by(*QUEUE_ORDER)
        .values_list("pk", "agent_id")[: settings.QUEUE_PAGE_SIZE]
    )
    return [pk for pk, agent in page if agent == agent_id]


def emergency_stop() -> EmergencyStop | None:
    return EmergencyStop.objects.select_related("changed_by").filter(id=1, engaged=True).first()


def proposal_detail(proposal_id: uuid.UUID | str) -> Proposal | None:
    return proposals_with_details().select_related("api_key").filter(pk=proposal_id).first()


def proposal_progress(proposal_id: uuid.UUID | str) -> tuple[str, int, str | None] | None:
    """(status, approvals, execution status) as committed: whether anything moved since a row
    was read."""
    return sql.proposal_progress(proposal_id)


def proposal_progress_ahead(
    proposal_id: uuid.UUID | str, up_to: int
) -> tuple[tuple[str, int, str | None] | None, int]:
    """proposal_progress, and how many pending proposals come before this one in the queue,
    counted up to `up_to`: a new card's live update asks both (approvals.placement)."""
    return sql.proposal_progress_ahead(proposal_id, up_to)


def undo_seconds_left(proposal: Proposal, now: Any = None) -> float | None:
    """Seconds left to undo this proposal's approval (see services.approval_undo), or None.

    Reads the execution the approval cached on the proposal: no query after a decision.
    """
    execution = execution_of(proposal) if proposal.status == ProposalStatus.APPROVED else None
    if execution is None or execution.attempts or execution.not_before is None:
        return None
    if execution.status not in (ExecutionStatus.QUEUED, ExecutionStatus.HELD):
        return None
    left = (execution.not_before - (now or timezone.now())).total_seconds()
    return round(left, 3) if left > 0 else None


def what(proposal: Any) -> str:
    """A proposal in a few words, as the console's messages name it: its action and target."""
    kind = catalogue.get(proposal.action)
    return f"{kind.label if kind else proposal.action} {proposal.target}"


def undo_toast(proposal: Proposal) -> dict[str, Any] | None:
    """What an approval's undo toast shows (templates/approvals/flash.html#undo-toast), or
    None once its window is over: what was approved, the seconds left, and whether its
    execution is held (the emergency stop, a suspension), which then runs only once
    re-confirmed."""
    seconds_left = undo_seconds_left(proposal)
    if not seconds_left:
        return None
    execution = execution_of(proposal)
    return {
        "proposal_id": proposal.pk,
        "what": what(proposal),
        "seconds": seconds_left,
        "held": execution is not None and execution.status == ExecutionStatus.HELD,
    }


def open_undos(analyst: Any) -> list[Proposal]:
    """The approvals this analyst may still undo (see services.approval_undo): their own last
    approval, whose execution has not started and whose window is open. A page opened after
    the approval (a reload, another tab, a decision on several cards) shows their toasts."""
    last_decider = (
        Decision.objects.filter(proposal=OuterRef("pk"))
        .order_by("-created_at", "-pk")
        .values("analyst_id")[:1]
    )
    return list(
        Proposal.objects.select_related("execution")
        .filter(
            status=ProposalStatus.APPROVED,
            execution__status__in=(ExecutionStatus.QUEUED, ExecutionStatus.HELD),
            execution__attempts=0,
            execution__not_before__gt=timezone.now(),
        )
        .annotate(last_decider=Subquery(last_decider))
        .filter(last_decider=analyst.pk)
        # The newest first, as the tray holds them (u undoes the one on top).
        .order_by("-execution__not_before")
    )


def render_stamp() -> int:
    """Milliseconds since the epoch, on the server's clock: when a piece of the queue was
    rendered. Pages keep the newest word on each card across live updates and re-fetches."""
    return int(time.time() * 1000)


def proposal_timeline(proposal_id: uuid.UUID | str) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(proposal_id=proposal_id).order_by("seq")


def held_executions() -> QuerySet[Execution]:
    return (
        Execution.objects.filter(status=ExecutionStatus.HELD)
        .select_related("proposal__agent")
        .order_by("created_at")
    )


def unreviewed_auto() -> QuerySet[Proposal]:
    # Not yet reviewed first: PostgreSQL sorts NULLs last by default, which would bury the
    # ones that still need an analyst under the already confirmed ones.
    return (
        proposals_with_details()
        .select_related("reviewed_by")
        .filter(status=ProposalStatus.AUTO_APPROVED)
        .order_by(F("reviewed_at").asc(nulls_first=True), "-created_at")
    )


def failed_executions(*, acknowledged: bool = False) -> QuerySet[Execution]:
    """Failed executions and rollbacks: those that need attention (not yet acknowledged, what
    the top bar counts), or with `acknowledged` those an analyst has dealt with."""
    return (
        Execution.objects.filter(
            status__in=[ExecutionStatus.FAILED, ExecutionStatus.ROLLBACK_FAILED],
            acknowledged_at__isnull=not acknowledged,
        )
        .select_related("proposal__agent", "acknowledged_by")
        .order_by("-acknowledged_at" if acknowledged else "-updated_at")
    )


def flagged_proposals() -> QuerySet[Proposal]:
    return proposals_with_details().filter(status=ProposalStatus.FLAGGED).order_by("-created_at")


def agent_track_records() -> dict[int, dict[str, Any]]:
    """Per agent: proposals, approved, rejected, failed and rolled back (the agents page)."""
    rows = (
        Proposal.objects.filter(synthetic=False)
        .values("agent_id")
        .annotate(
            proposals=Count("id"),
            approved=Count("id", filter=Q(status=ProposalStatus.APPROVED)),
            rejected=Count("id", filter=Q(status=ProposalStatus.REJECTED)),
            failed=Count("id", filter=Q(execution__status=ExecutionStatus.FAILED)),
            rolled_back=Count("id", filter=Q(execution__status=ExecutionStatus.ROLLED_BACK)),
        )
    )
    return {row["agent_id"]: row for row in rows}


# The proposals routing kept from the queue, each on a page of its own: advisory (level 1,
# recorded, never executed) and blocked (refused by a guardrail, with its code).
ROUTED_ELSEWHERE = (ProposalStatus.ADVISORY, ProposalStatus.BLOCKED)


@dataclass(frozen=True)
class RoutedFilters:
    """The Advisory and Blocked pages' filters, already read and checked by the view."""

    agent: str | None = None  # slug
    action: str | None = None
    reason: str | None = None  # a routing code (blocked) or a routing explanation, exactly
    since: Any = None  # aware datetimes: from `since`, up to (not including) `until`
    until: Any = None


def routed_proposals(*, status: str, filters: RoutedFilters) -> QuerySet[Proposal]:
    """Advisory or blocked proposals, newest first, under the page's filters."""
    if status not in ROUTED_ELSEWHERE:
        raise ValueError(f"{status} is not a routing outcome kept from the queue")
    qs = Proposal.objects.select_related("agent").filter(status=status)
    if filters.agent:
        qs = qs.filter(agent__slug=filters.agent)
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.reason:
        qs = qs.filter(Q(block_code=filters.reason) | Q(routing_explanation=filters.reason))
    if filters.since:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__lt=filters.until)
    return qs.order_by("-created_at", "-id")


def routed_choices(*, status: str) -> dict[str, Any]:
    """What the filters can pick from: the agents, the actions, and the routing reasons that
    proposals with this outcome carry (each explanation with its code, when it has one)."""
    reasons = (
        Proposal.objects.filter(status=status)
        .order_by("block_code", "routing_explanation")
        .values_list("block_code", "routing_explanation")
        .distinct()
    )
    return {
        "agents": list(listed_agents().order_by("slug").values_list("slug", flat=True)),
        "actions": sorted(catalogue.ACTIONS),
        "reasons": [(code, explanation) for code, explanation in reasons],
    }


@dataclass(frozen=True)
class Demotion:
    """One grant.demoted event as the agents page lists it."""

    seq: int
    at: Any
    action: str
    from_level: int
    to_level: int
    rule: str
    why: str
    policy_version: int
    held: int


# The agents page lists each agent's most recent demotions, at most this many in all.
DEMOTIONS_SHOWN = 100


def demotions_by_agent() -> dict[str, list[Demotion]]:
    """The latest grant.demoted events, newest first, by agent slug (one indexed query)."""
    found: dict[str, list[Demotion]] = {}
    events = AuditEvent.objects.filter(event_type="grant.demoted").order_by("-seq")
    for event in events[:DEMOTIONS_SHOWN]:
        data = event.data
        found.setdefault(data.get("agent", ""), []).append(
            Demotion(
                seq=event.seq,
                at=event.at,
                action=data.get("action", ""),
                from_level=data.get("from_level", 0),
                to_level=data.get("to_level", 0),
                rule=data.get("rule", ""),
                why=demotion.in_words(data),
                policy_version=data.get("policy_version", 0),
                held=len(data.get("held_executions") or []),
            )
        )
    return found
