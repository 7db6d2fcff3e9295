"""A year of synthetic decisions written with COPY, for the reports' benchmark at millions of
decisions (`bench.reports --decisions 10000000`).

Proposals, decisions and executions only: no audit events, which `generate_history` writes
one by one through the chain and which would take hours and most of the disk at this size.
The shape follows the demo: the demo agents and their grants, the three demo analysts, more
work by day than by night, latencies and times on card drawn log-normally.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

# (status, weight) of a proposal; decided ones have a decision (two for a critical asset).
STATUSES = (
    ("approved", 60),
    ("rejected", 20),
    ("expired", 2),
    ("withdrawn", 2),
    ("auto_approved", 10),
    ("blocked", 3),
    ("advisory", 2),
    ("flagged", 1),
)
CRITICALITY = (("low", 30), ("medium", 40), ("high", 25), ("critical", 5))
OUTCOMES = (("succeeded", 90), ("failed", 5), ("rolled_back", 5))
# Relative arrivals by hour of day (UTC): a day shift busier than the night.
HOURLY = [2, 2, 2, 2, 3, 4, 6, 8, 10, 10, 10, 9, 8, 9, 10, 10, 9, 8, 6, 5, 4, 3, 3, 2]
DECISIONS_PER_PROPOSAL = 0.86  # approved (one in twenty of them critical: two) and rejected

PROPOSAL_COLUMNS = [
    "id",
    "agent_id",
    "action",
    "target",
    "target_canonical",
    "params",
    "confidence",
    "rationale",
    "evidence",
    "severity",
    "status",
    "block_code",
    "routing_explanation",
    "required_approvals",
    "approvals",
    "priority",
    "criticality",
    "risk",
    "request_hash",
    "created_at",
    "decided_at",
    "escalate_at",
    "escalated_at",
    "expires_at",
]
DECISION_COLUMNS = [
    "proposal_id",
    "analyst_id",
    "verdict",
    "reason",
    "seconds_on_card",
    "created_at",
]
EXECUTION_COLUMNS = [
    "id",
    "proposal_id",
    "status",
    "idempotency_key",
    "attempts",
    "rollback_attempts",
    "error",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "updated_at",
]


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...], n: int) -> list[str]:
    names, weights = zip(*pairs, strict=True)
    return rng.choices(names, weights, k=n)


def rows(
    *,
    decisions: int,
    end: datetime,
    days: int,
    agents: list[tuple[int, list[str]]],
    analysts: list[int],
    seed: int = 14,
) -> Iterator[tuple[str, str, str]]:
    """Lines of COPY text for (proposals, decisions, executions), one proposal at a time."""
    rng = random.Random(seed)
    proposals = math.ceil(decisions / DECISIONS_PER_PROPOSAL)
    start = (end - timedelta(days=days)).timestamp()
    hour_weights = [w for _ in range(days) for w in HOURLY]
    made = 0
    batch = 50_000
    while made < decisions:
        n = min(batch, proposals)
        statuses = _weighted(rng, STATUSES, n)
        criticalities = _weighted(rng, CRITICALITY, n)
        hours = rng.choices(range(len(hour_weights)), hour_weights, k=n)
        for status, criticality, hour in zip(statuses, criticalities, hours, strict=True):
            created = start + hour * 3600 + rng.random() * 3600
            if created >= end.timestamp():
                continue
            agent, actions = agents[rng.randrange(len(agents))]
            action = actions[rng.randrange(len(actions))]
            if status == "auto_approved" and criticality == "critical":
                status = "approved"
            pid = os.urandom(16).hex()
            confidence = round(rng.uniform(0.3, 1.0), 3)
            decided = None
            lines_d, line_e = [], ""
            required = 2 if criticality == "critical" else 1
            sent = status in ("approved", "rejected", "expired", "withdrawn")
            if status in ("approved", "rejected"):
                decided = created + rng.lognormvariate(5.5, 1.0)
                final, first = rng.sample(analysts, 2)
                verdict = "approve" if status == "approved" else "reject"
                reason = "" if verdict == "approve" else "not convinced"
                card = rng.lognormvariate(2.5, 0.9)
                lines_d.append(
                    f"{pid}\t{final}\t{verdict}\t{reason}\t{card:.3f}\t{_stamp(decided)}\n"
                )
                if status == "approved" and required == 2:
                    lines_d.append(
                        f"{pid}\t{first}\tapprove\t\t{card:.3f}\t"
                        f"{_stamp(created + (decided - created) / 2)}\n"
                    )
            elif status == "expired":
                decided = created + 4 * 3600
            elif status == "withdrawn":
                decided = created + rng.lognormvariate(5, 1)
            elif status == "auto_approved":
                decided = created + 0.05
            if status in ("approved", "auto_approved"):
                outcome = _weighted(rng, OUTCOMES, 1)[0]
                began = decided + rng.uniform(1, 3)
                done = began + rng.uniform(0.5, 5)
                error = "connector refused" if outcome == "failed" else ""
                line_e = (
                    f"{os.urandom(16).hex()}\t{pid}\t{outcome}\t{os.urandom(16).hex()}\t1\t"
                    f"{1 if outcome == 'rolled_back' else 0}\t{error}\t{_stamp(decided)}\t"
                    f"{_stamp(decided)}\t{_stamp(began)}\t{_stamp(done)}\t{_stamp(done)}\n"
                )
            escalated = sent and decided is not None and decided - created > 900
            line_p = "\t".join(
                (
                    pid,
                    str(agent),
                    action,
                    f"ws-{pid[:6]}.corp.example",
                    f"ws-{pid[:6]}.corp.example",
                    "{}",
                    str(confidence),
                    "",
                    "[]",
                    "medium",
                    status,
                    "action_not_permitted" if status == "blocked" else "",
                    "",
                    str(required if sent else 0),
                    str(required if status == "approved" else 0),
                    "0",
                    criticality,
                    "high",
                    "",
                    _stamp(created),
                    r"\N" if decided is None else _stamp(decided),
                    _stamp(created + 900) if sent else r"\N",
                    _stamp(created + 900) if escalated else r"\N",
                    _stamp(created + 4 * 3600) if sent else r"\N",
                )
            )
            made += len(lines_d)
            yield line_p + "\n", "".join(lines_d), line_e
            if made >= decisions:
                return
        proposals = max(proposals - n, batch)


def write(
    url: str,
    *,
    decisions: int,
    end: datetime,
    days: int,
    agents: list[tuple[int, list[str]]],
    analysts: list[int],
) -> int:
    """COPY the rows into the database at `url` in one transaction per 200,000 proposals;
    returns the proposals written."""
    import psycopg

    written = 0
    generated = rows(decisions=decisions, end=end, days=days, agents=agents, analysts=analysts)
    with psycopg.connect(url) as conn:
        while True:
            chunk = []
            for item in generated:
                chunk.append(item)
                if len(chunk) >= 200_000:
                    break
            if not chunk:
                return written
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                for table, columns, index in (
                    ("approvals_proposal", PROPOSAL_COLUMNS, 0),
                    ("approvals_decision", DECISION_COLUMNS, 1),
                    ("approvals_execution", EXECUTION_COLUMNS, 2),
                ):
                    text = "".join(item[index] for item in chunk)
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        copy.write(text)
            written += len(chunk)
