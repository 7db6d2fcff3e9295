"""Queue priority: risk × criticality × confidence, plus a steady bonus for waiting.

A card's priority at time t is base + AGE_POINTS_PER_HOUR × age_hours(t). Since every card
ages at the same rate, ordering by base − AGE_POINTS_PER_HOUR × created_hours gives the same
order at any moment. That value is stored and indexed, so the queue is one indexed scan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.catalogue import CRITICALITY_WEIGHT, RISK_WEIGHT

AGE_POINTS_PER_HOUR = 4.0


def base_priority(*, risk: str, criticality: str, confidence: float) -> float:
    return (
        RISK_WEIGHT.get(risk, 2.0) * CRITICALITY_WEIGHT.get(criticality, 2.0) * (0.5 + confidence)
    )


def priority_key(*, risk: str, criticality: str, confidence: float, created_at: datetime) -> float:
    hours = created_at.timestamp() / 3600.0
    return base_priority(risk=risk, criticality=criticality, confidence=confidence) - (
        AGE_POINTS_PER_HOUR * hours
    )


def priority_now(key: float, now: datetime) -> float:
    return key + AGE_POINTS_PER_HOUR * now.timestamp() / 3600.0


def placed(
    *, risk: str, criticality: str, confidence: float, created_at: datetime
) -> dict[str, Any]:
    """A new proposal row's fields that set its place in the queue: its risk, criticality and
    creation time, and the stored priority made of them."""
    return {
        "risk": risk,
        "criticality": criticality,
        "created_at": created_at,
        "priority": priority_key(
            risk=risk, criticality=criticality, confidence=confidence, created_at=created_at
        ),
    }
