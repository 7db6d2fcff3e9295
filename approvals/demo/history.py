"""Synthetic decision history for demos and the report benchmarks.

The rows are what the services would have written had the history happened live: proposals
routed by the real routing function under each agent's current policy, decisions with the time
on card, executions with their timings and outcomes, and one audit event per state change,
appended to the hash chain in time order so that verify_audit passes afterwards.

The people and agents behave differently on purpose, so that the reports have something to
find: `analyst` rubber-stamps (about 2 s on the card, approves ~97%), `analyst2` reads and
rejects what is wrong, `senior` works an overloaded night shift (and is called in by day for
critical approvals) and gets faster and less careful the longer they work without a break;
`triage-bot` has earned level 3 for isolate_host, `edr-responder` is over-confident and not
ready for more autonomy (none of its grants lets it act alone).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from approvals.models import AttentionCheck, Decision, Execution, Proposal
from audit import bulk
from audit.log import record_many

from .generator import Generator
from .people import HOURLY
from .rows import (
    CHECK_COLUMNS,
    DECISION_COLUMNS,
    EXECUTION_COLUMNS,
    PROPOSAL_COLUMNS,
    Generated,
)

CHUNK = 5000  # proposals per transaction: bounded memory, and the head lock is released often


def arrivals(
    rng: random.Random, *, start: datetime, end: datetime, per_hour: float
) -> Iterator[datetime]:
    """Poisson arrivals whose rate follows the hour-of-day profile, in time order."""
    mean = sum(HOURLY) / len(HOURLY)
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        rate = per_hour * HOURLY[hour.hour] / mean
        t = 0.0
        while True:
            t += rng.expovariate(rate / 3600) if rate > 0 else 3600
            if t >= 3600:
                break
            at = hour + timedelta(seconds=t)
            if start <= at < end:
                yield at
        hour += timedelta(hours=1)


def _flush(out: Generated, heap: list, until: datetime | None) -> int:
    """Write the chunk's rows and the events that happened before `until`, in time order."""
    with transaction.atomic():
        bulk.write_rows(Proposal._meta.db_table, PROPOSAL_COLUMNS, out.proposals)
        bulk.write_rows(Decision._meta.db_table, DECISION_COLUMNS, out.decisions)
        bulk.write_rows(Execution._meta.db_table, EXECUTION_COLUMNS, out.executions)
        bulk.write_rows(AttentionCheck._meta.db_table, CHECK_COLUMNS, out.checks)
        for item in out.events:
            heapq.heappush(heap, item)
        ready = []
        while heap and (until is None or heap[0][0] < until):
            ready.append(heapq.heappop(heap)[2])
        # A decision made after the next proposal's submission waits in the heap, so the
        # chain's order is the order things happened.
        written = record_many(ready, write=bulk.write_rows)
    out.proposals.clear()
    out.decisions.clear()
    out.executions.clear()
    out.checks.clear()
    out.events.clear()
    return written


def generate(
    *,
    rng: random.Random,
    end: datetime,
    weeks: float | None = None,
    decisions: int | None = None,
    per_hour: float = 6.0,
    compact_events: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, int]:
    """Generate history ending at `end`: for a number of weeks, or until N decisions.

    Returns (proposals, decisions, audit events).
    """
    gen = Generator(rng, compact_events=compact_events, until=end)
    if decisions is not None:
        # About 0.98 decisions per proposal with this mix (two-person approvals make up for
        # the auto-approved, flagged and expired); size the window to end close to `end`.
        hours = decisions / (per_hour * 0.97)
        start = end - timedelta(hours=hours)
    else:
        start = end - timedelta(weeks=weeks or 4)
    out = Generated()
    heap: list = []
    n_proposals = n_decisions = n_events = 0
    for at in arrivals(rng, start=start, end=end, per_hour=per_hour):
        n_decisions += gen.proposal(out, at)
        n_proposals += 1
        if len(out.proposals) >= CHUNK:
            n_events += _flush(out, heap, at)
            if progress:
                progress(n_proposals, n_decisions)
        if decisions is not None and n_decisions >= decisions:
            break
    n_events += _flush(out, heap, None)
    return n_proposals, n_decisions, n_events


def demo_end(now: datetime) -> datetime:
    """Where the demo's history ends when it is seeded at `now`: half an hour back, on the hour.

    On the hour, the window holds whole hours only, so the draws depend on the hour of the
    week the history ends at and on nothing finer: seeded at any moment, the demo is one of
    168 histories, and `python -m bench.demo_story` checks the story on every one of them.
    """
    return (now - timedelta(minutes=30)).replace(minute=0, second=0, microsecond=0)


def seed_history(*, weeks: int, rng: random.Random, end: datetime | None = None) -> int:
    """Several weeks of history for the demo, ending at `end` (by default `demo_end` of now);
    returns the number of proposals created."""
    end = demo_end(timezone.now()) if end is None else end
    proposals, _, _ = generate(rng=rng, end=end, weeks=weeks, per_hour=3.0)
    return proposals
