"""Duplicate groups and what surrounds a card: the pending proposals on some targets, counted
by action, target and agent in the database, and the token a group's one decision posts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.core import signing

from agents import catalogue

from .. import sql
from ..models import Proposal, ProposalStatus
from .cards import AgentVoice, Card, CardContext, DuplicateGroup, group_key

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


@dataclass
class _Pair:
    """One action on one target, as counted: how many, each agent's part, the lead's params."""

    count: int = 0
    voices: list[AgentVoice] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


def _pairs_on(targets: set[str]) -> tuple[dict[tuple[str, str], _Pair], int]:
    """The pending proposals on these targets counted by action, target and agent, in one
    statement (approvals.sql.pair_rows): each agent's count and its best case (most confident,
    then most evidence), each pair's lead (the queue's first, whose parameters a connector's
    state is judged with) and the audit log's head. Only those rows leave the database, however
    many are open (a storm puts thousands on a few targets)."""
    pairs: dict[tuple[str, str], _Pair] = {}
    ranked: dict[tuple[str, str], list[tuple[tuple[float, float, Any], AgentVoice]]] = {}
    head = 0
    for row in sql.pair_rows(targets):
        found = pairs.setdefault((row.action, row.target), _Pair())
        head = row.head or head
        if row.lead == 1:
            found.params = dict(row.params or {})
        if row.best == 1:
            found.count += row.voices
            voice = AgentVoice(
                row.shown,
                row.voices,
                row.confidence,
                row.rationale,
                list(row.evidence or []),
                suspended=bool(row.suspended),
            )
            # Equally confident agents are listed in the order of their first cards.
            rank = (-row.confidence, -row.voice_priority, row.voice_since)
            ranked.setdefault((row.action, row.target), []).append((rank, voice))
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


def anything_around(arrivals: Iterable[tuple[str, str]]) -> list[str]:
    """Of the targets of these new proposals (action, target), those with a context to show:
    two or more proposals pending there, or a state the action's connector records there.

    One statement on indexed columns (sql.targets_around), a fraction of open_on_targets'
    statement and the connector's states, which most new proposals, alone on their target, do
    not need: in a storm of proposals on as many targets, a batch of arrivals then costs this
    read and nothing more.
    """
    connectors: dict[str, set[str]] = {}
    for action, target in arrivals:
        kind = catalogue.get(action)
        connectors.setdefault(kind.connector if kind else "", set()).add(target)
    return sorted(sql.targets_around(connectors))


def open_on_targets(targets: Iterable[str], *, look_first: bool = False) -> OpenOnTargets:
    """The pending proposals on these targets, counted: one query, whatever their number.

    `look_first` asks first whether any proposal is pending on them at all, on an index: for
    decisions, whose targets are mostly left with nothing open, that look costs a fraction of
    the counting statement (measured under bench.execute: the decision's context took more
    of the approving process's CPU than the card itself).
    """
    targets = set(targets)
    pending = Proposal.objects.filter(status=ProposalStatus.PENDING, target_canonical__in=targets)
    if look_first and not pending.exists():
        return OpenOnTargets(members={}, head=0)
    members, head = _pairs_on(targets)
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
