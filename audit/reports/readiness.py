"""One agent's readiness, action by action: the level it has, its record, its calibration, its
shadow policy's score, its demotions and the recommendation, each with where its evidence is.

The figures are the agent-trust report's (same populations, same period); the shadow's score
is approvals.selectors.shadow's; demotions are read from the audit log (`grant.demoted`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from agents import demotion
from agents.models import Agent, Policy
from approvals.selectors.shadow import ShadowScore, Tally, agent_shadow, shadow_score
from audit.models import AuditEvent

from .autonomy import Advice, TrustRow
from .base import BANDS, Filters, share
from .trust import trust_rows

DEMOTED = "grant.demoted"

# What each kind of advice asks of a manager, in one word.
VERDICTS = {"promote": "promote", "demote": "demote"}


@dataclass(frozen=True)
class Demotion:
    seq: int
    at: Any
    from_level: Any
    to_level: Any
    rule: str
    evidence: Any
    policy_version: Any
    why: str = ""  # the rule that fired, in words (agents.demotion.in_words)


@dataclass
class ActionReadiness:
    action: str
    level: int
    record: TrustRow | None
    calibration: list[tuple[str, int, Any]]  # (band, decided, approval rate)
    shadow_level: int | None  # the level the shadow policy gives it, if one is in shadow
    shadow: Tally | None
    demotions: list[Demotion] = field(default_factory=list)

    @property
    def advice(self) -> Advice:
        if self.record is None:
            return Advice("thin", "no proposals in this period")
        return self.record.advice()

    @property
    def verdict(self) -> str:
        """promote, hold or demote."""
        return VERDICTS.get(self.advice.kind, "hold")

    @property
    def sentence(self) -> str:
        """The recommendation in one sentence, with the numbers behind it."""
        advice = self.advice
        text = advice.text
        if self.record is not None and advice.kind in ("thin", "not ready"):
            text = f"keep level {self.level}: {text.split(': ', 1)[-1]}"
        elif self.record is None:
            text = f"keep level {self.level}: {text}"
        return text[0].upper() + text[1:] + "."

    @property
    def calibration_text(self) -> list[str]:
        """Each confidence band's approval rate, or how few it holds."""
        return [
            f"{band}: {rate} of {n} approved"
            if rate.value is not None
            else f"{band}: {n} decided (too few to judge)"
            for band, n, rate in self.calibration
        ]

    @property
    def shadow_changes_level(self) -> bool:
        return self.shadow_level is not None and self.shadow_level != self.level


@dataclass(frozen=True)
class Readiness:
    agent: Agent
    live: Policy | None
    filters: Filters
    actions: list[ActionReadiness]
    shadow: ShadowScore | None


def demotions(slug: str) -> dict[str, list[Demotion]]:
    """The agent's demotions by action, newest first, from the audit log."""
    found: dict[str, list[Demotion]] = defaultdict(list)
    for event in AuditEvent.objects.filter(event_type=DEMOTED, data__agent=slug).order_by("-seq"):
        data = event.data if isinstance(event.data, dict) else {}
        found[str(data.get("action", ""))].append(
            Demotion(
                seq=event.seq,
                at=event.at,
                from_level=data.get("from_level"),
                to_level=data.get("to_level"),
                rule=str(data.get("rule", "")),
                evidence=data.get("evidence"),
                policy_version=data.get("policy_version"),
                why=demotion.in_words(data),
            )
        )
    return found


def readiness(agent: Agent, f: Filters | None = None) -> Readiness:
    f = replace(f or Filters.default(), agent=agent.slug, action=None)
    live = agent.policies.live().prefetch_related("grants").first()
    levels = {g.action: g.level for g in live.grants.all()} if live else {}
    rows, calibration = trust_rows(f, by="action")
    records = {r.action: r for r in rows if r.agent == agent.slug}
    shadow = agent_shadow(agent)
    score = shadow_score(shadow) if shadow is not None else None
    shadow_levels = {g.action: g.level for g in shadow.grants.all()} if shadow else {}
    demoted = demotions(agent.slug)
    labels = [f"{low:.1f}–{high:.1f}" for low, high in BANDS]
    actions = []
    for action in sorted(set(levels) | set(records) | set(shadow_levels) | set(demoted)):
        bands = calibration.get(action, {})
        banded = [(label, *bands[i]) for i, label in enumerate(labels, start=1) if bands.get(i)]
        actions.append(
            ActionReadiness(
                action=action,
                level=levels.get(action, 0),
                record=records.get(action),
                calibration=[(label, n, share(approved, n)) for label, n, approved in banded],
                shadow_level=shadow_levels.get(action, 0) if shadow else None,
                shadow=score.by_action.get(action) if score else None,
                demotions=demoted.get(action, []),
            )
        )
    return Readiness(agent=agent, live=live, filters=f, actions=actions, shadow=score)
