"""What a connector holds for a target now, as a card and a proposal page show it: whether the
effect a proposal asks for is already in place, since when and through which proposal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents import catalogue

from . import sql
from .connectors import in_place
from .models import ConnectorCall, Decision, Execution, Verdict


@dataclass(frozen=True)
class TargetState:
    """What the connector holds for a card's target now, as the card shows it."""

    connector: str
    target: str
    state: dict[str, Any]
    since: datetime
    in_place: bool  # the card's action is already in effect on the target
    by_proposal: str | None = None  # the proposal whose execution put it in place
    by_agent: str | None = None
    by_analyst: str | None = None  # who approved that one (None: it ran without approval)

    @property
    def facts(self) -> str:
        """The state in a few words: "isolated", "blocked", "password_resets 2"."""
        words = []
        for key, value in sorted(self.state.items()):
            if key == "params":
                continue
            if value is True:
                words.append(key)
            elif value is False:
                words.append(f"not {key}")
            else:
                words.append(f"{key} {value}")
        return ", ".join(words) or "nothing recorded"


def target_states(
    pairs: Iterable[tuple[str, str, dict[str, Any]]],
) -> dict[tuple[str, str], TargetState]:
    """Per (action, target) of the given (action, target, params): the connector's state of
    the target, and whether the action is already in effect there, by whose proposal.

    A fixed number of queries for any number of cards: the states, and only when some are in
    place, the calls that put them there and those calls' executions.
    """
    wanted: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for action, target, params in pairs:
        kind = catalogue.get(action)
        if kind is not None:
            wanted[(action, target)] = (kind.connector, params)
    if not wanted:
        return {}
    # Targets and connectors each as one IN list (a few connectors: the rows of another
    # connector on the same target are few and dropped here), not an OR of pairs.
    rows = {
        (row.connector, row.target): row
        for row in sql.connector_states(
            {connector for connector, _ in wanted.values()}, {target for _, target in wanted}
        )
    }
    found: dict[tuple[str, str], TargetState] = {}
    placed: list[tuple[str, str, str]] = []  # (connector, operation, target) in place
    for (action, target), (connector, params) in wanted.items():
        row = rows.get((connector, target))
        if row is None or not row.state:
            continue
        done = in_place(action, row.state, params)
        found[(action, target)] = TargetState(
            connector=connector,
            target=target,
            state=dict(row.state),
            since=row.updated_at,
            in_place=done,
        )
        if done:
            placed.append((connector, action, target))
    if placed:
        found.update(_placed_by(found, placed))
    return found


def _placed_by(
    found: dict[tuple[str, str], TargetState], placed: list[tuple[str, str, str]]
) -> dict[tuple[str, str], TargetState]:
    """Since when, and by which proposal, each effect in place is there: its last call."""
    calls: dict[tuple[str, str], ConnectorCall] = {}
    for call in ConnectorCall.objects.filter(
        connector__in={c for c, _, _ in placed},
        operation__in={o for _, o, _ in placed},
        target__in={t for _, _, t in placed},
    ).order_by("at"):
        calls[(call.operation, call.target)] = call  # the latest wins
    executions = {
        e.idempotency_key: e
        for e in Execution.objects.select_related("proposal__agent").filter(
            idempotency_key__in=[c.idempotency_key for c in calls.values()]
        )
    }
    approvers = {
        d.proposal_id: d.analyst.get_username()
        for d in Decision.objects.select_related("analyst")
        .filter(
            proposal_id__in=[e.proposal_id for e in executions.values()],
            verdict=Verdict.APPROVE,
        )
        .order_by("created_at")
    }
    updated = {}
    for _, operation, target in placed:
        call = calls.get((operation, target))
        if call is None:
            continue
        execution = executions.get(call.idempotency_key)
        state = found[(operation, target)]
        updated[(operation, target)] = TargetState(
            connector=state.connector,
            target=state.target,
            state=state.state,
            since=call.at,
            in_place=True,
            by_proposal=str(execution.proposal_id) if execution else None,
            by_agent=execution.proposal.agent.slug if execution else None,
            by_analyst=approvers.get(execution.proposal_id) if execution else None,
        )
    return updated
