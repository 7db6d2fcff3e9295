"""Who does what in the generated history: the analysts' styles and shifts, the agents' records,
and how often things happen by hour of day (see approvals/demo/history.py)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class AnalystStyle:
    """How one demo analyst works: what the fatigue report should pick out."""

    card_median: float  # median seconds on the card at the start of a shift
    card_sigma: float  # spread of the log-normal time on card
    fatigue: float  # factor applied to time on card per hour into the shift
    approve_anyway: float  # chance of approving a proposal that deserved a rejection
    wait_minutes: float  # mean wait in the queue before this analyst decides


STYLES: dict[str, AnalystStyle] = {
    "analyst": AnalystStyle(2.0, 0.35, 1.0, 0.9, 4.0),
    "analyst2": AnalystStyle(45.0, 0.45, 1.0, 0.08, 9.0),
    "senior": AnalystStyle(30.0, 0.5, 0.85, 0.35, 24.0),
}


@dataclass(frozen=True)
class AgentRecord:
    """An agent's true track record: share of its proposals worth approving, by confidence."""

    weight: float
    actions: dict[str, float]
    confidence: tuple[float, float]  # mean and spread
    good_at: Callable[[float], float]  # probability a proposal at this confidence is right
    failure_rate: float


RECORDS: dict[str, AgentRecord] = {
    "triage-bot": AgentRecord(
        0.45,
        {"isolate_host": 0.45, "block_ip": 0.3, "create_ticket": 0.15, "close_duplicate": 0.1},
        (0.84, 0.08),
        # Wrong more often than not below 0.7, almost never from 0.8 up: a clear threshold,
        # clear enough that the trust report finds it whatever hour the history ends at.
        lambda c: 0.2 + 0.798 * min(1.0, max(0.0, (c - 0.6) / 0.2)),
        0.005,
    ),
    "phish-hunter": AgentRecord(
        0.3,
        {"disable_user": 0.5, "revoke_sessions": 0.3, "reset_password": 0.2},
        (0.78, 0.1),
        lambda c: 0.55 + 0.4 * c,
        0.03,
    ),
    "edr-responder": AgentRecord(
        0.22,
        {"isolate_host": 0.6, "kill_process": 0.25, "block_ip": 0.15},
        (0.86, 0.07),
        lambda c: 0.5,  # confident whatever it knows: approval does not rise with confidence
        0.12,
    ),
    "intern-bot": AgentRecord(
        0.03, {"block_ip": 0.6, "disable_user": 0.4}, (0.7, 0.1), lambda c: 0.5, 0
    ),
}

CRITICALITY = (("low", 0.35), ("medium", 0.35), ("high", 0.2), ("critical", 0.1))
# Arrivals by hour of day (UTC): busy office hours, and a night with an incident backlog.
HOURLY = [6, 5, 5, 4, 4, 4, 5, 7, 10, 12, 12, 11, 10, 11, 11, 10, 9, 8, 7, 6, 8, 9, 8, 7]


def on_shift(at: datetime, rng: random.Random) -> str:
    """Who works the queue at this moment (times in UTC)."""
    if at.hour >= 20 or at.hour < 8:
        return "senior"
    if at.weekday() >= 5:
        return "analyst2"
    if at.hour < 12:
        return "analyst"
    if at.hour < 16:
        return "analyst" if rng.random() < 0.6 else "analyst2"
    return "analyst2"


# A pause this long ends a run of work, as the fatigue report splits decisions into shifts.
BREAK = timedelta(hours=3)
# Nobody gets more tired after this long (a benchmark's analysts decide around the clock).
WORST_AFTER_HOURS = 16.0


class Tiredness:
    """How long each person has worked without a break, as the history unfolds.

    A run of work starts at the first decision after a pause longer than BREAK, whatever the
    rota says: the senior called in by day for a critical approval is fresh after a morning
    off, and tired when the calls run on into the night shift.
    """

    def __init__(self) -> None:
        self._runs: dict[str, tuple[datetime, datetime]] = {}  # who: (run's start, latest)

    def hours_in(self, who: str, at: datetime) -> float:
        start, latest = self._runs.get(who, (at, at))
        # Decisions are drawn in the order proposals arrive, not quite the order they are made.
        start = at if at - latest > BREAK else min(start, at)
        self._runs[who] = (start, max(latest, at))
        return min(WORST_AFTER_HOURS, (at - start).total_seconds() / 3600)
