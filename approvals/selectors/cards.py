"""The queue as analysts see it: cards, duplicate groups, the filter and the queue's order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import F, Q, Subquery
from django.utils import timezone

from agents import catalogue

from ..models import Execution, Proposal, ProposalStatus
from ..priority import priority_now
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
    suspended: bool = False  # its agent is suspended: its proposals cannot be approved


@dataclass(frozen=True)
class DuplicateGroup:
    key: str
    count: int  # pending proposals in the group when it was read
    agents: list[AgentVoice] = field(default_factory=list)
    # What the group's one decision posts (see group_token): its action, its target and the
    # audit log's head when it was read. Only proposals that existed then are decided by it.
    token: str = ""

    @property
    def none_approvable(self) -> bool:
        """Every agent of the group is suspended: "Approve all" could approve none of it."""
        return bool(self.agents) and all(voice.suspended for voice in self.agents)


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
