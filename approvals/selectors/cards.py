"""The queue as analysts see it: cards, duplicate groups, the filter and the queue's order."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db.models import CharField, F, Q
from django.db.models.functions import Coalesce
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

    @property
    def joined_ids(self) -> str:
        """The ids as the group's form sends them, in one field: joined here, since the
        template's join filter escapes each id on its own (hundreds per card in a storm)."""
        return " ".join(self.ids)


@dataclass(frozen=True)
class CardContext:
    """What surrounds the proposals of one action on one canonical target, for their card:
    rendered once per change for every console (approvals.live) and copied by console.js into
    each card of that key."""

    key: str
    action_label: str
    group: DuplicateGroup | None
    others: tuple[tuple[str, int], ...]  # other actions open on the target: (label, count)
    target_state: Any = None  # approvals.connector_state.TargetState, or None: nothing recorded

    @property
    def empty(self) -> bool:
        """Nothing to show: no duplicates, nothing else open on the target, no state."""
        return self.group is None and not self.others and self.target_state is None


@dataclass(frozen=True)
class _Open:
    id: uuid.UUID
    action: str
    target: str
    params: dict[str, Any]
    confidence: float
    agent: str


@dataclass(frozen=True)
class _Details:
    rationale: str
    evidence: list[Any]


def _open_on_targets(targets: Iterable[str]) -> list[_Open]:
    """Every pending proposal on these canonical targets, in the queue's order: one query on
    the partial index proposal_pending_target, read as plain rows and only the columns that
    group them and the parameters a connector's state is judged with (a queue of thousands on
    a few targets is common in a storm; their texts are read only for the few cards that show
    them, see _details)."""
    rows = (
        Proposal.objects.filter(status=ProposalStatus.PENDING, target_canonical__in=set(targets))
        .order_by(*QUEUE_ORDER)
        # An attention check names the agent its card names (Proposal.agent_shown).
        .annotate(
            shown=Coalesce("attention_check__shown_agent", "agent__slug", output_field=CharField())
        )
        .values_list("id", "action", "target_canonical", "params", "confidence", "shown")
    )
    return [_Open(*row) for row in rows]


def _details(ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, _Details]:
    """The rationale and evidence of these proposals: one query, none for no proposal."""
    ids = set(ids)
    if not ids:
        return {}
    rows = Proposal.objects.filter(pk__in=ids).values_list("id", "rationale", "evidence")
    return {row[0]: _Details(*row[1:]) for row in rows}


def _group(
    key: str, found: list[_Open], details: dict[uuid.UUID, _Details]
) -> DuplicateGroup | None:
    if len(found) < 2:
        return None
    voices: dict[str, list[_Open]] = {}
    for p in found:
        voices.setdefault(p.agent, []).append(p)
    agents = []
    for slug, theirs in voices.items():
        best = max(
            _contenders(theirs),
            key=lambda p: (p.confidence, len(details[p.id].evidence or [])),
        )
        agents.append(
            AgentVoice(
                slug=slug,
                count=len(theirs),
                confidence=best.confidence,
                rationale=details[best.id].rationale,
                evidence=list(details[best.id].evidence or []),
            )
        )
    agents.sort(key=lambda v: -v.confidence)
    return DuplicateGroup(key=key, ids=[str(p.id) for p in found], agents=agents)


def _contenders(theirs: list[_Open]) -> list[_Open]:
    """An agent's most confident proposals in a group: its best case is one of them (the one
    with the most evidence)."""
    top = max(p.confidence for p in theirs)
    return [p for p in theirs if p.confidence == top]


@dataclass
class OpenOnTargets:
    """The pending proposals on some targets, grouped by action and target. Each pair's
    context is built once, however many cards of the pair ask for it."""

    members: dict[tuple[str, str], list[_Open]]
    details: dict[uuid.UUID, _Details]
    _contexts: dict[
        tuple[str, str], tuple[str, DuplicateGroup | None, tuple[tuple[str, int], ...]]
    ] = field(default_factory=dict)

    def pairs(self) -> set[tuple[str, str]]:
        return set(self.members)

    def params(self, pair: tuple[str, str]) -> dict[str, Any]:
        """The parameters a card of this pair acts with: its first (highest-priority) one's."""
        found = self.members.get(pair)
        return dict(found[0].params or {}) if found else {}

    def context(
        self, action: str, target: str, states: dict[tuple[str, str], Any] | None = None
    ) -> CardContext:
        pair = (action, target)
        if pair not in self._contexts:
            key = group_key(action, target)
            others = []
            for (other, on), found in sorted(self.members.items()):
                if on == target and other != action:
                    other_kind = catalogue.get(other)
                    others.append((other_kind.label if other_kind else other, len(found)))
            group = _group(key, self.members.get(pair, []), self.details)
            self._contexts[pair] = (key, group, tuple(others))
        key, group, others = self._contexts[pair]
        kind = catalogue.get(action)
        return CardContext(
            key=key,
            action_label=kind.label if kind else action,
            group=group,
            others=others,
            target_state=(states or {}).get(pair),
        )


def open_on_targets(targets: Iterable[str]) -> OpenOnTargets:
    """The pending proposals on these targets: one query, and a second for the texts of each
    agent's most confident proposals in a group, when there is a group."""
    members: dict[tuple[str, str], list[_Open]] = {}
    for p in _open_on_targets(targets):
        members.setdefault((p.action, p.target), []).append(p)
    wanted: list[uuid.UUID] = []
    for found in members.values():
        if len(found) < 2:
            continue
        voices: dict[str, list[_Open]] = {}
        for p in found:
            voices.setdefault(p.agent, []).append(p)
        for theirs in voices.values():
            wanted.extend(p.id for p in _contenders(theirs))
    return OpenOnTargets(members=members, details=_details(wanted))


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
    approvals.connector_state.target_states)."""
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
            # An attention check goes with the agent its card names.
            q &= Q(agent__slug=self.agent) | Q(attention_check__shown_agent=self.agent)
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
