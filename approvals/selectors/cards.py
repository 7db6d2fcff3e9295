"""The queue as analysts see it: cards, duplicate groups, the filter and the queue's order."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core import signing
from django.db.models import CharField, Count, F, Max, Min, Q, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from agents import catalogue
from audit.models import AuditEvent

from ..models import Execution, Proposal, ProposalStatus
from ..priority import priority_now
from ..sql import EvidenceCount
from .payloads import execution_of, proposals_with_details

# The queue's order, the page's and the live updates' (approvals.live places cards by it).
QUEUE_ORDER = ("-priority", "created_at")
_QUEUE_ORDER = [F("priority").desc(), F("created_at").asc()]


@dataclass(frozen=True)
class Card:
    """What a queue card shows, computed once per render."""

    proposal: Proposal
    action: catalogue.ActionType | None
    effect: str
    priority: float
    seconds_to_escalation: float | None
    seconds_to_expiry: float | None
    # When it escalated (or will) and when it expires, as the card prints them.
    escalation: Moment | None
    expiry: Moment | None
    execution: Execution | None
    # What surrounds the proposal (its duplicates, the target's other open proposals, the
    # connector's state of it); None until read (see CardContext).
    context: CardContext | None = None
    # The context's two parts ("facts", "group") as rendered once for every card of its action
    # and target on a page (approvals.views.queue); None: card.html renders them itself.
    context_html: tuple[str, str] | None = None

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
    def filter_target(self) -> str:
        """What the queue's target filter matches in the browser: the canonical target and the
        target as written, lower case (QueueFilter.query on the server)."""
        p = self.proposal
        return f"{(p.target_canonical or p.target).lower()} {p.target.lower()}"

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


@dataclass(frozen=True)
class Moment:
    """A time as a card prints it, in the console's time zone: `iso` for the browser (which
    shows it relative to now), `clock` for the page as sent."""

    iso: str
    clock: str


def _moment(at: datetime | None) -> Moment | None:
    # Formatted here once instead of by the template's date filter: four or six uses a card,
    # a sixth of a full page's rendering.
    if at is None:
        return None
    local = timezone.localtime(at)
    return Moment(iso=local.isoformat(), clock=local.strftime("%H:%M"))


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
        escalation=_moment(proposal.escalated_at or proposal.escalate_at),
        expiry=_moment(proposal.expires_at),
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
    count: int  # pending proposals in the group when it was read
    agents: list[AgentVoice] = field(default_factory=list)
    # What the group's one decision posts (see group_token): its action, its target and the
    # audit log's head when it was read. Only proposals that existed then are decided by it.
    token: str = ""


# The group's form names the group and when it was read, not its proposals (a storm's group
# of hundreds would put hundreds of ids in every card of it). The stamp is the audit log's head
# (its highest seq) as read in the same statement as the group: events take their seq in commit
# order (audit.log holds the head until commit), so every proposal whose submission event is at
# or below the stamp was committed, and counted, when the group was read, and every later one is
# above it. Signed, so that a forged stamp or key is refused instead of deciding what nobody saw.
_GROUP_SALT = "approvals.duplicate-group"


def group_token(action: str, target: str, stamp: int) -> str:
    return signing.dumps([action, target, stamp], salt=_GROUP_SALT)


def group_of_token(token: str) -> tuple[str, str, int]:
    """(action, target, stamp) of a group's form; BadSignature for anything the console did not
    render."""
    value = signing.loads(token, salt=_GROUP_SALT)
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, str) for v in value[:2])
        and isinstance(value[2], int)
    ):
        raise signing.BadSignature("not a duplicate group")
    return value[0], value[1], value[2]


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


@dataclass
class _Pair:
    """One action on one target, as counted: how many, each agent's part, the lead's params."""

    count: int = 0
    voices: list[AgentVoice] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


def _pairs_on(targets: set[str]) -> tuple[dict[tuple[str, str], _Pair], int]:
    """The pending proposals on these targets counted by action, target and agent, in one
    statement: each agent's count and its best case (most confident, then most evidence), each
    pair's lead (the queue's first, whose parameters a connector's state is judged with) and
    the audit log's head. Only those rows leave the database, however many are open (a storm
    puts thousands on a few targets)."""
    pair = [F("target_canonical"), F("action")]
    voice = [*pair, F("shown")]
    rows = (
        Proposal.objects.filter(status=ProposalStatus.PENDING, target_canonical__in=targets)
        # An attention check names the agent its card names (Proposal.agent_shown).
        .annotate(
            shown=Coalesce("attention_check__shown_agent", "agent__slug", output_field=CharField())
        )
        .annotate(
            voices=Window(Count("id"), partition_by=voice),
            # Where the agent's first card stands in the queue: equally confident agents are
            # listed in that order.
            voice_priority=Window(Max("priority"), partition_by=voice),
            voice_since=Window(Min("created_at"), partition_by=voice),
            best=Window(
                RowNumber(),
                partition_by=voice,
                order_by=[F("confidence").desc(), EvidenceCount().desc(), *_QUEUE_ORDER],
            ),
            lead=Window(RowNumber(), partition_by=pair, order_by=_QUEUE_ORDER),
            head=Subquery(AuditEvent.objects.order_by("-seq").values("seq")[:1]),
        )
        .filter(Q(best=1) | Q(lead=1))
        .order_by()  # the model's default order would sort every row once more
        .values_list(
            "target_canonical",
            "action",
            "shown",
            "voices",
            "best",
            "lead",
            "confidence",
            "rationale",
            "evidence",
            "params",
            "head",
            "voice_priority",
            "voice_since",
        )
    )
    pairs: dict[tuple[str, str], _Pair] = {}
    ranked: dict[tuple[str, str], list[tuple[tuple[float, float, Any], AgentVoice]]] = {}
    head = 0
    for row in rows:
        target, action, shown, voices, best, lead, confidence, rationale, evidence = row[:9]
        params, at, voice_priority, voice_since = row[9:]
        found = pairs.setdefault((action, target), _Pair())
        head = at or head
        if lead == 1:
            found.params = dict(params or {})
        if best == 1:
            found.count += voices
            voice = AgentVoice(shown, voices, confidence, rationale, list(evidence or []))
            rank = (-confidence, -voice_priority, voice_since)
            ranked.setdefault((action, target), []).append((rank, voice))
    for key, voices in ranked.items():
        pairs[key].voices = [voice for _, voice in sorted(voices, key=lambda v: v[0])]
    return pairs, head


@dataclass
class OpenOnTargets:
    """The pending proposals on some targets, counted by action and target. Each pair's
    context is built once, however many cards of the pair ask for it."""

    members: dict[tuple[str, str], _Pair]
    head: int  # the audit log's head when they were read (see group_token)
    _contexts: dict[
        tuple[str, str], tuple[str, DuplicateGroup | None, tuple[tuple[str, int], ...]]
    ] = field(default_factory=dict)

    def pairs(self) -> set[tuple[str, str]]:
        return set(self.members)

    def params(self, pair: tuple[str, str]) -> dict[str, Any]:
        """The parameters a card of this pair acts with: its first (highest-priority) one's."""
        found = self.members.get(pair)
        return dict(found.params) if found else {}

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
                    others.append((other_kind.label if other_kind else other, found.count))
            self._contexts[pair] = (key, self._group(key, pair), tuple(others))
        key, group, others = self._contexts[pair]
        kind = catalogue.get(action)
        return CardContext(
            key=key,
            action_label=kind.label if kind else action,
            group=group,
            others=others,
            target_state=(states or {}).get(pair),
        )

    def _group(self, key: str, pair: tuple[str, str]) -> DuplicateGroup | None:
        found = self.members.get(pair)
        if found is None or found.count < 2:
            return None
        return DuplicateGroup(
            key=key,
            count=found.count,
            agents=found.voices,
            token=group_token(*pair, self.head),
        )


def open_on_targets(targets: Iterable[str]) -> OpenOnTargets:
    """The pending proposals on these targets, counted: one query, whatever their number."""
    members, head = _pairs_on(set(targets))
    return OpenOnTargets(members=members, head=head)


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
    """The analysts' queue, highest priority first; a fixed number of queries at any size.

    The page's ids are chosen first, on the proposal's own narrow columns, and only those rows
    are joined with their agent, asset and execution: joining first made the database carry
    every pending proposal's joined row into the sort whenever it misjudged their number (as on
    a table not yet analysed, where 5,000 pending ones cost it tens of milliseconds)."""
    limit = limit or settings.QUEUE_PAGE_SIZE
    now = timezone.now()
    page = Proposal.objects.filter(status=ProposalStatus.PENDING)
    if filters is not None and filters.active:
        page = page.filter(filters.query())
    page = page.order_by(*QUEUE_ORDER).values("id")[:limit]
    rows = proposals_with_details().filter(pk__in=Subquery(page)).order_by(*QUEUE_ORDER)
    return [card_for(p, now) for p in rows]
