"""The autonomy each agent has today: what trust judges and what the what-if replays."""

from __future__ import annotations

from agents import catalogue
from agents.models import Agent


def levels() -> dict[tuple[str, str], int]:
    """(agent slug, action) → the grant's level in the agent's current policy."""
    found = {}
    for agent in Agent.objects.prefetch_related("policies__grants"):
        policies = sorted(agent.policies.all(), key=lambda p: -p.version)
        if policies:
            for grant in policies[0].grants.all():
                found[(agent.slug, grant.action)] = grant.level
    return found


def reversible(action: str) -> bool:
    kind = catalogue.get(action)
    return bool(kind and kind.reversible)


def runs_alone(level: int, action: str) -> bool:
    """Whether a grant lets the agent act with no human: the autonomy a demotion takes away.
    Level 3 covers only reversible actions; level 2 never runs anything alone."""
    return level >= 4 or (level == 3 and reversible(action))


def eligible_pairs(scope: str) -> set[tuple[str, str]]:
    """(agent slug, action) pairs that could run without a human under a replayed threshold:
    the grants as they are ("granted"), or every reversible action granted level 2 or more
    as if level 3 ("reversible")."""
    return {
        (slug, action)
        for (slug, action), level in levels().items()
        if (scope == "reversible" and level >= 2 and reversible(action))
        or runs_alone(level, action)
    }
