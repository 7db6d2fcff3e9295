"""Reads shared by the API, the console pages, the live updates and the callbacks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from agents import catalogue
from agents.models import Agent, EmergencyStop
from audit.models import AuditEvent

from . import sql
from .models import Decision, Execution, ExecutionStatus, Proposal, ProposalStatus
from .priority import priority_now


def proposals_with_details() -> QuerySet[Proposal]:
    return Proposal.objects.select_related("agent", "execution", "asset").prefetch_related(
        Prefetch("decisions", queryset=Decision.objects.select_related("analyst"))
    )


def agent_proposals(*, agent_id: int, status: str | None = None) -> QuerySet[Proposal]:
    qs = proposals_with_details().filter(agent_id=agent_id).order_by("-created_at")
    if status:
        qs = qs.filter(status=status)
    return qs


def execution_payload(execution: Execution | None) -> dict[str, Any] | None:
    if execution is None:
        return None
    return {
        "id": str(execution.id),
        "status": execution.status,
        "attempts": execution.attempts,
        # Not before this moment: the approval's undo window, or a retry's backoff.
        "not_before": execution.not_before,
        "result": execution.result,
        "error": execution.error or None,
        "updated_at": execution.updated_at,
    }


def execution_of(proposal: Proposal) -> Execution | None:
    try:
        return proposal.execution
    except Execution.DoesNotExist:
        return None


# What routing made of a proposal, from its status now: a decision, an expiry or a withdrawal
# came after a proposal routed to the queue.
_ROUTED_TO_QUEUE = {
    ProposalStatus.APPROVED,
    ProposalStatus.REJECTED,
    ProposalStatus.EXPIRED,
    ProposalStatus.WITHDRAWN,
}


def routing_payload(proposal: Proposal) -> dict[str, Any]:
    """How the guardrails judged the proposal when it arrived (DESIGN §11, Additions)."""
    status = proposal.status
    return {
        "outcome": ProposalStatus.PENDING.value if status in _ROUTED_TO_QUEUE else status,
        "code": proposal.block_code or None,
        "reason": proposal.routing_explanation,
        "policy_version": proposal.policy_version,
        "shadow_version": None,  # no shadow policy judged it
    }


def asset_payload(proposal: Proposal) -> dict[str, Any] | None:
    """The inventoried asset the target matched (the most critical, when several did), with
    the criticality it had when the proposal was judged."""
    if proposal.asset_id is None:
        return None
    return {"identifier": proposal.asset.identifier, "criticality": proposal.criticality}


def blocked_code(proposal: Proposal) -> str | None:
    """The 403's code of a blocked proposal; None for any other (routing.code also names why
    one that would have run at once waits for a human: `budget_exhausted`)."""
    if proposal.status != ProposalStatus.BLOCKED:
        return None
    return proposal.block_code or None


def proposal_payload(proposal: Proposal) -> dict[str, Any]:
    """The proposal as the agent API, callbacks and exports show it (DESIGN §11)."""
    return {
        "id": str(proposal.id),
        "status": proposal.status,
        "code": blocked_code(proposal),
        "explanation": proposal.routing_explanation,
        "agent": proposal.agent.slug,
        "action": proposal.action,
        "target": proposal.target,
        "target_canonical": proposal.target_canonical or proposal.target,
        "asset": asset_payload(proposal),
        "routing": routing_payload(proposal),
        "params": proposal.params,
        "confidence": proposal.confidence,
        "rationale": proposal.rationale,
        "evidence": proposal.evidence,
        "severity": proposal.severity,
        "criticality": proposal.criticality,
        "required_approvals": proposal.required_approvals,
        "approvals": proposal.approvals,
        "policy_version": proposal.policy_version,
        "created_at": proposal.created_at,
        "expires_at": proposal.expires_at,
        "decisions": [
            {
                "verdict": d.verdict,
                "reason": d.reason,
                "analyst": d.analyst.get_username(),
                "at": d.created_at,
            }
            for d in proposal.decisions.all()
        ],
        "execution": execution_payload(execution_of(proposal)),
        "url": f"{settings.PUBLIC_URL}/api/v1/proposals/{proposal.id}/",
        "console_url": f"{settings.PUBLIC_URL}/proposals/{proposal.id}/",
    }


@dataclass(frozen=True)
class Card:
    """What a queue card shows, computed once per render."""

    proposal: Proposal
    action: catalogue.ActionType | None
    effect: str
    priority: float
    seconds_to_escalation: float | None
    seconds_to_expiry: float | None
    execution: Execution | None
    # What surrounds the proposal (its duplicates, the target's other open proposals, the
    # connector's state of it); None until read (see CardContext).
    context: CardContext | None = None

    @property
    def group(self) -> DuplicateGroup | None:
        return self.context.group if self.context else None

    @property
    def others(self) -> tuple[tuple[str, int], ...]:
        return self.context.others if self.context else ()

    @property
    def target_state(self) -> Any:
        return self.context.target_state if self.context else None

    @property
    def id(self) -> uuid.UUID:
        return self.proposal.id

    @property
    def group_key(self) -> str:
        return group_key(
            self.proposal.action, self.proposal.target_canonical or self.proposal.target
        )

    @property
    def awaiting_senior(self) -> bool:
        """Approved once already; what it waits for is a senior analyst's approval."""
        return self.needs_senior and self.proposal.approvals > 0

    @property
    def needs_senior(self) -> bool:
        p = self.proposal
        return p.criticality == "critical" and p.approvals + 1 >= p.required_approvals

    @property
    def approval_note(self) -> str:
        """The two-person rule in words, so nobody learns it from a refusal."""
        p = self.proposal
        if p.criticality != "critical":
            return ""
        if self.needs_senior:
            return "the next approval must come from a senior analyst"
        return "two analysts; the second must be a senior analyst"

    @property
    def approval_hint(self) -> str:
        """The same rule, short enough for the card's line of facts."""
        p = self.proposal
        if p.criticality != "critical":
            return ""
        return "next must be a senior" if self.needs_senior else "2nd must be a senior"

    @property
    def outcome_note(self) -> str:
        """What happened to a card that left the queue, for the analyst who had it open."""
        p = self.proposal
        what = f"{self.action.label if self.action else p.action} {p.target}"
        status = p.get_status_display().lower()
        decisions = list(p.decisions.all())  # prefetched; no query
        if p.status in (ProposalStatus.APPROVED, ProposalStatus.REJECTED) and decisions:
            return f"{what} was just {status} by {decisions[-1].analyst.get_username()}."
        return f"{what} is no longer pending: it was {status}."


def card_for(proposal: Proposal, now: Any = None) -> Card:
    now = now or timezone.now()
    kind = catalogue.get(proposal.action)
    return Card(
        proposal=proposal,
        action=kind,
        # What the connector will act on: the canonical target.
        effect=kind.describe(proposal.target_canonical or proposal.target)
        if kind
        else proposal.action,
        priority=round(priority_now(proposal.priority, now), 2),
        seconds_to_escalation=(proposal.escalate_at - now).total_seconds()
        if proposal.escalate_at
        else None,
        seconds_to_expiry=(proposal.expires_at - now).total_seconds()
        if proposal.expires_at
        else None,
        execution=execution_of(proposal),
    )


def group_key(action: str, target: str) -> str:
    """Pending proposals with the same action and canonical target are one real decision."""
    return f"{action} {target}"


@dataclass(frozen=True)
class AgentVoice:
    """One agent's part in a duplicate group: how often it asked, and its best case."""

    slug: str
    count: int
    confidence: float
    rationale: str
    evidence: list[Any]


@dataclass(frozen=True)
class DuplicateGroup:
    key: str
    ids: list[str]  # every pending proposal of the group, in the queue's order
    agents: list[AgentVoice] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class CardContext:
    """What surrounds the proposals of one action on one canonical target, for their card:
    rendered once per change for every console (approvals.live) and copied by console.js into
    each card of that key."""

    key: str
    action_label: str
    group: DuplicateGroup | None
    others: tuple[tuple[str, int], ...]  # other actions open on the target: (label, count)
    target_state: Any = None  # approvals.connectors.TargetState, or None: nothing recorded


@dataclass(frozen=True)
class _Open:
    id: uuid.UUID
    action: str
    target: str
    params: dict[str, Any]
    confidence: float
    rationale: str
    evidence: list[Any]
    agent: str


def _open_on_targets(targets: Iterable[str]) -> list[_Open]:
    """Every pending proposal on these canonical targets, in the queue's order: one query on
    the partial index proposal_pending_target, read as plain rows."""
    rows = (
        Proposal.objects.filter(status=ProposalStatus.PENDING, target_canonical__in=set(targets))
        .order_by(*QUEUE_ORDER)
        .values_list(
            "id",
            "action",
            "target_canonical",
            "params",
            "confidence",
            "rationale",
            "evidence",
            "agent__slug",
        )
    )
    return [_Open(*row) for row in rows]


def _group(key: str, found: list[_Open]) -> DuplicateGroup | None:
    if len(found) < 2:
        return None
    voices: dict[str, list[_Open]] = {}
    for p in found:
        voices.setdefault(p.agent, []).append(p)
    agents = []
    for slug, theirs in voices.items():
        best = max(theirs, key=lambda p: (p.confidence, len(p.evidence or [])))
        agents.append(
            AgentVoice(
                slug=slug,
                count=len(theirs),
                confidence=best.confidence,
                rationale=best.rationale,
                evidence=list(best.evidence or []),
            )
        )
    agents.sort(key=lambda v: -v.confidence)
    return DuplicateGroup(key=key, ids=[str(p.id) for p in found], agents=agents)


@dataclass(frozen=True)
class OpenOnTargets:
    """The pending proposals on some targets, grouped by action and target."""

    members: dict[tuple[str, str], list[_Open]]

    def pairs(self) -> set[tuple[str, str]]:
        return set(self.members)

    def params(self, pair: tuple[str, str]) -> dict[str, Any]:
        """The parameters a card of this pair acts with: its first (highest-priority) one's."""
        found = self.members.get(pair)
        return dict(found[0].params or {}) if found else {}

    def context(
        self, action: str, target: str, states: dict[tuple[str, str], Any] | None = None
    ) -> CardContext:
        key = group_key(action, target)
        kind = catalogue.get(action)
        others = []
        for (other, on), found in sorted(self.members.items()):
            if on == target and other != action:
                other_kind = catalogue.get(other)
                others.append((other_kind.label if other_kind else other, len(found)))
        return CardContext(
            key=key,
            action_label=kind.label if kind else action,
            group=_group(key, self.members.get((action, target), [])),
            others=tuple(others),
            target_state=(states or {}).get((action, target)),
        )


def open_on_targets(targets: Iterable[str]) -> OpenOnTargets:
    members: dict[tuple[str, str], list[_Open]] = {}
    for p in _open_on_targets(targets):
        members.setdefault((p.action, p.target), []).append(p)
    return OpenOnTargets(members=members)


def duplicate_groups(pairs: Iterable[tuple[str, str]]) -> dict[str, DuplicateGroup]:
    """The groups of two or more pending proposals among these (action, target) pairs."""
    pairs = set(pairs)
    found = open_on_targets(target for _, target in pairs)
    groups = {}
    for action, target in pairs:
        group = found.context(action, target).group
        if group is not None:
            groups[group.key] = group
    return groups


def with_context(cards: list[Card], states: dict[tuple[str, str], Any] | None = None) -> list[Card]:
    """The cards with their CardContext (the connector's states, when given, come from
    approvals.connectors.target_states)."""
    if not cards:
        return cards
    found = open_on_targets(c.proposal.target_canonical or c.proposal.target for c in cards)
    return [
        replace(
            card,
            context=found.context(
                card.proposal.action, card.proposal.target_canonical or card.proposal.target, states
            ),
        )
        for card in cards
    ]


# The queue's order, the page's and the live updates' (approvals.live places cards by it).
QUEUE_ORDER = ("-priority", "created_at")


@dataclass(frozen=True)
class QueueFilter:
    """What an analyst narrowed the queue to. The page applies it on the server; console.js
    applies the same rules to live cards, by the data attributes each card carries."""

    agent: str = ""  # an agent's slug
    action: str = ""  # a catalogue action name
    target: str = ""  # part of the target, as written or canonical, any case
    severity: str = ""
    escalated: bool = False
    awaiting_senior: bool = False

    @property
    def active(self) -> bool:
        return any(vars(self).values())

    def query(self) -> Q:
        q = Q()
        if self.agent:
            q &= Q(agent__slug=self.agent)
        if self.action:
            q &= Q(action=self.action)
        if self.target:
            q &= Q(target_canonical__icontains=self.target) | Q(target__icontains=self.target)
        if self.severity:
            q &= Q(severity=self.severity)
        if self.escalated:
            q &= Q(escalated_at__isnull=False)
        if self.awaiting_senior:
            # Card.awaiting_senior: a critical asset, approved once, whose next approval is
            # its last (and so must be a senior's).
            q &= Q(
                criticality="critical",
                approvals__gte=1,
                required_approvals__lte=F("approvals") + 1,
            )
        return q


def pending_queue(*, limit: int | None = None, filters: QueueFilter | None = None) -> list[Card]:
    """The analysts' queue, highest priority first; a fixed number of queries at any size."""
    limit = limit or settings.QUEUE_PAGE_SIZE
    now = timezone.now()
    rows = proposals_with_details().filter(status=ProposalStatus.PENDING)
    if filters is not None and filters.active:
        rows = rows.filter(filters.query())
    return [card_for(p, now) for p in rows.order_by(*QUEUE_ORDER)[:limit]]


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
    rows = Proposal.objects.values("agent_id").annotate(
        proposals=Count("id"),
        approved=Count("id", filter=Q(status=ProposalStatus.APPROVED)),
        rejected=Count("id", filter=Q(status=ProposalStatus.REJECTED)),
        failed=Count("id", filter=Q(execution__status=ExecutionStatus.FAILED)),
        rolled_back=Count("id", filter=Q(execution__status=ExecutionStatus.ROLLED_BACK)),
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
        "agents": list(Agent.objects.order_by("slug").values_list("slug", flat=True)),
        "actions": sorted(catalogue.ACTIONS),
        "reasons": [(code, explanation) for code, explanation in reasons],
    }
