"""The queue as analysts see it: cards, duplicate groups, the filter and the queue's order."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from agents import catalogue

from ..models import Execution, Proposal, ProposalStatus
from ..priority import priority_now
from .payloads import execution_of, proposals_with_details


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
    # The same action on the same target, pending from others too: one card for them all.
    group: DuplicateGroup | None = None
    # Other open proposals on this target (other actions), as (action label, count).
    others: tuple[tuple[str, int], ...] = ()
    # What the connector holds for the target now (approvals.connectors.TargetState).
    target_state: Any = None

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


def _open_on_targets(targets: Iterable[str]) -> list[Proposal]:
    """Every pending proposal on these canonical targets, in the queue's order: one query."""
    return list(
        Proposal.objects.filter(status=ProposalStatus.PENDING, target_canonical__in=set(targets))
        .select_related("agent")
        .only(
            "id",
            "action",
            "target",
            "target_canonical",
            "confidence",
            "rationale",
            "evidence",
            "priority",
            "created_at",
            "agent__slug",
        )
        .order_by(*QUEUE_ORDER)
    )


def duplicate_groups(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, DuplicateGroup], dict[str, list[tuple[str, int]]]]:
    """For (action, canonical target) pairs: the groups of two or more pending proposals, by
    group key, and per target the counts of open proposals of each action on it."""
    pairs = set(pairs)
    rows = _open_on_targets(target for _, target in pairs)
    members: dict[str, list[Proposal]] = {}
    per_target: dict[str, dict[str, int]] = {}
    for p in rows:
        target = p.target_canonical or p.target
        members.setdefault(group_key(p.action, target), []).append(p)
        counts = per_target.setdefault(target, {})
        counts[p.action] = counts.get(p.action, 0) + 1
    groups = {}
    for action, target in pairs:
        key = group_key(action, target)
        found = members.get(key, [])
        if len(found) < 2:
            continue
        voices: dict[str, list[Proposal]] = {}
        for p in found:
            voices.setdefault(p.agent.slug, []).append(p)
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
        groups[key] = DuplicateGroup(key=key, ids=[str(p.pk) for p in found], agents=agents)
    others = {target: sorted(counts.items()) for target, counts in per_target.items()}
    return groups, others


def with_context(cards: list[Card], states: dict[tuple[str, str], Any] | None = None) -> list[Card]:
    """The cards with their duplicate group, the other open proposals on their target and,
    when given, the connector's state of it (approvals.connectors.target_states)."""
    if not cards:
        return cards
    pairs = {(c.proposal.action, c.proposal.target_canonical or c.proposal.target) for c in cards}
    groups, others = duplicate_groups(pairs)
    result = []
    for card in cards:
        p = card.proposal
        target = p.target_canonical or p.target
        labels = []
        for action, count in others.get(target, []):
            if action == p.action:
                continue
            kind = catalogue.get(action)
            labels.append((kind.label if kind else action, count))
        result.append(
            replace(
                card,
                group=groups.get(card.group_key),
                others=tuple(labels),
                target_state=(states or {}).get((p.action, target)),
            )
        )
    return result


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
