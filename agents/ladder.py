"""The one scale of importance, low → medium → high → critical.

An asset's criticality, a proposal's severity, an action's risk and a policy's scope tiers are
all read on it. Plain Python, so that settings can check a configured value against it before
Django has loaded any model; `agents.models.Criticality` is built from it.
"""

from __future__ import annotations

LADDER: tuple[str, ...] = ("low", "medium", "high", "critical")


def rank(value: str) -> int:
    """0 for low … 3 for critical; a ValueError for anything else."""
    return LADDER.index(value)


def weight(value: str) -> float:
    """The priority weight of a step: 1.0 for low … 4.0 for critical."""
    return float(rank(value) + 1)
