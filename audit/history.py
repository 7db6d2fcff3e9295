"""Synthetic decision history for demos and the report benchmarks."""

from __future__ import annotations

import random


def seed_history(*, weeks: int, rng: random.Random) -> int:
    """Placeholder replaced by the reports work: returns the number of proposals created."""
    return 0
