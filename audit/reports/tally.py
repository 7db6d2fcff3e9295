"""What the latency, trust and what-if reports count about a set of proposals, as a `Tally`
that adds up: one proposal's contribution, and the merge of two tallies (a day's, a month's,
the rows of a partial day).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import add
from typing import Any

from approvals.models import ExecutionStatus, ProposalStatus

from .base import BAD_OUTCOMES, DECIDED_STATUSES, FINISHED, SENT_STATUSES, UNDONE
from .histogram import Histogram, ints, put
from .histogram import add as _add

# Bump when the buckets or the shape of a row change: rows of another version are not read.
VERSION = 1

# --- the figures of a set of proposals, mergeable ---------------------------------------------

COUNTS = (
    "proposals",
    "sent",
    "decided",
    "approved",
    "rejected",
    "expired",
    "withdrawn",
    "pending",
    "auto",
    "escalated",
    "executed",
    "failed",
    "undone",
    "auto_executed",
    "auto_bad",
    "two_person",
)
# Per confidence centile: sent to analysts, rejected, approved but failed or rolled back,
# expired, auto-approved (each on critical targets and on the others), then decided and
# approved (all targets), then decided and "good" on non-critical targets (trust's scan).
C_SENT, C_REJECTED, C_UNDONE, C_EXPIRED, C_AUTO = 0, 1, 2, 3, 4
NON_CRITICAL = 5  # offset of the same five on non-critical targets
C_DECIDED, C_APPROVED, C_NC_DECIDED, C_NC_GOOD = 10, 11, 12, 13
CONFIDENCE_WIDTH = 14
CENTILES = [k / 100 for k in range(101)]


def centile(confidence: float) -> int:
    """k with CENTILES[k] <= confidence < CENTILES[k+1]: compared as the routing function and
    the exact reports compare (confidence >= threshold), never by multiplying."""
    return max(bisect.bisect_right(CENTILES, confidence) - 1, 0)


@dataclass
class Tally:
    """What the reports count about some proposals; `merge` adds another's."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    wait: Histogram = field(default_factory=dict)
    confidence: dict[int, list[int]] = field(default_factory=dict)
    withdrawn_wait: Histogram = field(default_factory=dict)
    hours: dict[int, Histogram] = field(default_factory=dict)
    analysts: dict[str, Histogram] = field(default_factory=dict)
    first: Histogram = field(default_factory=dict)
    final: Histogram = field(default_factory=dict)
    # proposal status -> [executions started, to start histogram, to finish histogram]
    ran: dict[str, list[Any]] = field(default_factory=dict)
    pending_at: list[float] = field(default_factory=list)  # submission times, epoch seconds
    # hour slot from the row's start -> (net change, highest running depth, when first)
    queue: dict[int, tuple[int, int, float]] = field(default_factory=dict)

    def merge(self, other: Tally, *, queue: bool = False) -> None:
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        _add(self.wait, other.wait)
        for k, values in other.confidence.items():
            mine = self.confidence.get(k)
            self.confidence[k] = values[:] if mine is None else list(map(add, mine, values))
        _add(self.withdrawn_wait, other.withdrawn_wait)
        for hour, histogram in other.hours.items():
            _add(self.hours.setdefault(hour, {}), histogram)
        for name, histogram in other.analysts.items():
            _add(self.analysts.setdefault(name, {}), histogram)
        _add(self.first, other.first)
        _add(self.final, other.final)
        for status, (n, start, finish) in other.ran.items():
            mine = self.ran.setdefault(status, [0, {}, {}])
            mine[0] += n
            _add(mine[1], start)
            _add(mine[2], finish)
        self.pending_at.extend(other.pending_at)
        if queue:
            # `other` comes after this tally in time (a month merges its days in order).
            for slot, moves in other.queue.items():
                mine = self.queue.get(slot)
                self.queue[slot] = moves if mine is None else then(mine, moves)

    def columns(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "wait": self.wait,
            "confidence": self.confidence,
            "detail": {
                "v": VERSION,
                "withdrawn_wait": self.withdrawn_wait,
                "hours": self.hours,
                "analysts": self.analysts,
                "first": self.first,
                "final": self.final,
                "ran": self.ran,
                "pending_at": self.pending_at,
                "queue": {k: list(v) for k, v in self.queue.items()},
            },
        }

    @classmethod
    def from_columns(cls, counts: dict, wait: dict, confidence: dict, detail: dict | None) -> Tally:
        tally = cls(
            counts=dict(counts),
            wait=ints(wait),
            confidence={int(k): v for k, v in confidence.items()},
        )
        if detail:
            tally.withdrawn_wait = ints(detail["withdrawn_wait"])
            tally.hours = {int(h): ints(v) for h, v in detail["hours"].items()}
            tally.analysts = {name: ints(v) for name, v in detail["analysts"].items()}
            tally.first = ints(detail["first"])
            tally.final = ints(detail["final"])
            tally.ran = {s: [n, ints(a), ints(b)] for s, (n, a, b) in detail["ran"].items()}
            tally.pending_at = list(detail["pending_at"])
            tally.queue = {int(k): tuple(v) for k, v in detail["queue"].items()}  # type: ignore[misc]
        return tally


@dataclass
class Contribution:
    counts: list[str]
    centile: int
    confidence: list[tuple[int, int]]  # (index, 1) per tally of the centile it counts in
    wait: float | None
    withdrawn_wait: float | None
    hour: int
    decisions: Iterable[tuple[str, float]]
    two_person: tuple[float, float] | None
    ran: tuple[str, float, float | None] | None
    pending_at: float | None


def contribution(
    status: str,
    confidence: float,
    criticality: str,
    created: float,
    waited: float | None,
    escalated: bool,
    required: int,
    run: str | None,
    to_start: float | None,
    to_finish: float | None,
    given: Iterable[tuple[str, float]],
    hour: int,
) -> Contribution:
    """What one proposal adds to a tally."""
    status_ = ProposalStatus
    decided = status in DECIDED_STATUSES
    two = None
    if required >= 2 and status == status_.APPROVED and given and waited is not None:
        two = (min(seconds for _, seconds in given), waited)
    ran = None
    if to_start is not None and status in (status_.APPROVED, status_.AUTO_APPROVED):
        ran = (status, to_start, to_finish)
    return Contribution(
        counts=_counts(status, run, escalated=escalated),
        centile=centile(confidence),
        confidence=_by_confidence(status, run, critical=criticality == "critical"),
        wait=waited if decided else None,
        withdrawn_wait=waited if status == status_.WITHDRAWN else None,
        hour=int(hour),
        decisions=given,
        two_person=two,
        ran=ran,
        pending_at=created if status == status_.PENDING else None,
    )


def _counts(status: str, run: str | None, *, escalated: bool) -> list[str]:
    """The COUNTS a proposal adds one to."""
    auto = status == ProposalStatus.AUTO_APPROVED
    counts = ["proposals"]
    if status in SENT_STATUSES:
        counts.append("sent")
    if status in DECIDED_STATUSES:
        counts.append("decided")
    name = COUNTED_STATUS.get(status)
    if name:
        counts.append(name)
    if escalated:
        counts.append("escalated")
    if run in FINISHED:
        counts.append("executed")
        if auto:
            counts.append("auto_executed")
    if run == ExecutionStatus.FAILED:
        counts.append("failed")
    if run in UNDONE:
        counts.append("undone")
    if auto and run in BAD_OUTCOMES:
        counts.append("auto_bad")
    return counts


def _by_confidence(status: str, run: str | None, *, critical: bool) -> list[tuple[int, int]]:
    """The places in its confidence centile's row a proposal adds one to."""
    status_ = ProposalStatus
    bad = run in BAD_OUTCOMES
    offset = 0 if critical else NON_CRITICAL
    tallied: list[tuple[int, int]] = []
    if status in SENT_STATUSES:
        tallied.append((offset + C_SENT, 1))
    if status == status_.REJECTED:
        tallied.append((offset + C_REJECTED, 1))
    if status == status_.APPROVED and bad:
        tallied.append((offset + C_UNDONE, 1))
    if status == status_.EXPIRED:
        tallied.append((offset + C_EXPIRED, 1))
    if status == status_.AUTO_APPROVED:
        tallied.append((offset + C_AUTO, 1))
    if status in DECIDED_STATUSES:
        tallied.append((C_DECIDED, 1))
        if status == status_.APPROVED:
            tallied.append((C_APPROVED, 1))
        if offset:
            tallied.append((C_NC_DECIDED, 1))
            if status == status_.APPROVED and not bad:
                tallied.append((C_NC_GOOD, 1))
    return tallied


COUNTED_STATUS = {
    ProposalStatus.APPROVED: "approved",
    ProposalStatus.REJECTED: "rejected",
    ProposalStatus.EXPIRED: "expired",
    ProposalStatus.WITHDRAWN: "withdrawn",
    ProposalStatus.PENDING: "pending",
    ProposalStatus.AUTO_APPROVED: "auto",
}


def apply(tally: Tally, c: Contribution, *, only: str) -> None:
    counts = tally.counts
    for name in c.counts:
        counts[name] += 1
    if c.confidence:
        row = tally.confidence.get(c.centile)
        if row is None:
            row = tally.confidence[c.centile] = [0] * CONFIDENCE_WIDTH
        for index, n in c.confidence:
            row[index] += n
    if c.wait is not None:
        put(tally.wait, c.wait)
        put(tally.hours.setdefault(c.hour, {}), c.wait)
    if c.withdrawn_wait is not None:
        put(tally.withdrawn_wait, c.withdrawn_wait)
    for name, seconds in c.decisions:
        if not only or name == only:
            put(tally.analysts.setdefault(name, {}), seconds)
    if c.two_person is not None:
        counts["two_person"] += 1
        put(tally.first, c.two_person[0])
        put(tally.final, c.two_person[1])
    if c.ran is not None:
        status, to_start, to_finish = c.ran
        entry = tally.ran.setdefault(status, [0, {}, {}])
        entry[0] += 1
        put(entry[1], to_start)
        if to_finish is not None:
            put(entry[2], to_finish)
    if c.pending_at is not None:
        tally.pending_at.append(c.pending_at)


Slot = tuple[int, int, float]  # net change, highest running depth from its start, when


def then(earlier: Slot, later: Slot) -> Slot:
    """One hour slot's moves from two stretches of it, `earlier` before `later`: the later
    stretch starts at the depth the earlier one ended at."""
    net, most, at = earlier
    later_net, later_most, later_at = later
    if net + later_most > most:
        return net + later_net, net + later_most, later_at
    return net + later_net, most, at


def queue_slots(events: list[tuple[float, int]]) -> dict[int, tuple[int, int, float]]:
    """Per hour slot: net change, highest running depth from the slot's start and when it
    was first reached; moves at the same moment take departures first (as QUEUE_DEPTH)."""
    out: dict[int, tuple[int, int, float]] = {}
    events.sort()
    slot, depth, most, at = None, 0, 0, 0.0
    for t, delta in events:
        s = int(t // 3600)
        if s != slot:
            if slot is not None:
                out[slot] = (depth, most, at)
            slot, depth, most, at = s, 0, -(10**9), 0.0
        depth += delta
        if depth > most:
            most, at = depth, t
    if slot is not None:
        out[slot] = (depth, most, at)
    return out
