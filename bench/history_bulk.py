"""A year of synthetic decisions for the reports' benchmark at millions of decisions
(`bench.reports --decisions 10000000`), written in bulk by the database server itself.

Proposals, decisions and executions only: no audit events, which `generate_history` writes
one by one through the chain and which would take hours and most of the disk at this size.
Rows are drawn in SQL (generate_series and random()) into an unlogged table, a million
proposals at a time, and written with COPY: each table's rows leave the server by `COPY (SELECT
…) TO STDOUT` in COPY's text format and go back in by `COPY … FROM STDIN`, block by
block, so that Python never formats a row (formatting them in Python cost about 150 µs of CPU
per proposal, hours for ten million on a shared machine).

The shape follows the demo: the demo agents and their grants, the three demo analysts, more
work by day than by night, latencies and times on card drawn log-normally, a second approval
for critical targets.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

# Expected decisions per proposal: 60.5 % approved (5 % of them critical: two decisions) and
# 20 % rejected.
DECISIONS_PER_PROPOSAL = 0.605 * 1.05 + 0.2
CHUNK = 1_000_000

DRAW = """
CREATE UNLOGGED TABLE bench_draw AS
WITH d AS (
    SELECT lpad(to_hex(%(offset)s + g), 32, '0')::uuid AS id, md5(g::text) AS tag,
           random() AS rs, random() AS rc, random() AS rh,
           random() AS rd, random() AS ro, random() AS ra, random() AS rb,
           floor(random() * %(pairs)s)::int + 1 AS pair,
           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z1,
           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z2
    FROM generate_series(1, %(n)s) AS g
), s AS (
    SELECT d.*,
           CASE WHEN rs < 0.60 THEN 'approved' WHEN rs < 0.80 THEN 'rejected'
                WHEN rs < 0.82 THEN 'expired' WHEN rs < 0.84 THEN 'withdrawn'
                WHEN rs < 0.94 THEN 'auto_approved' WHEN rs < 0.97 THEN 'blocked'
                WHEN rs < 0.99 THEN 'advisory' ELSE 'flagged' END AS drawn,
           CASE WHEN rc < 0.30 THEN 'low' WHEN rc < 0.70 THEN 'medium'
                WHEN rc < 0.95 THEN 'high' ELSE 'critical' END AS criticality,
           to_timestamp(%(start)s + floor(rd * %(days)s) * 86400
               + 3600 * CASE WHEN rh < 0.7 THEN 7 + 12 * random()
                             ELSE mod((19 + 12 * random())::numeric, 24)::float8 END
           ) AS created_at
    FROM d
), t AS (
    SELECT s.*,
           CASE WHEN drawn = 'auto_approved' AND criticality = 'critical' THEN 'approved'
                ELSE drawn END AS status
    FROM s WHERE created_at < to_timestamp(%(end)s)
)
SELECT t.id, t.tag, (%(agents)s::int[])[pair] AS agent_id, (%(actions)s::text[])[pair] AS action,
       round((0.3 + 0.7 * random())::numeric, 3)::float8 AS confidence, status, criticality,
       created_at,
       CASE WHEN status IN ('approved', 'rejected')
                THEN created_at + make_interval(secs => least(exp(5.5 + z1), %(life)s))
            WHEN status = 'expired' THEN created_at + interval '4 hours'
            WHEN status = 'withdrawn'
                THEN created_at + make_interval(secs => least(exp(5 + z1), %(life)s))
            WHEN status = 'auto_approved' THEN created_at + interval '50 milliseconds'
       END AS decided_at,
       CASE WHEN criticality = 'critical' THEN 2 ELSE 1 END AS required,
       floor(ra * %(k)s)::int AS who,
       exp(2.5 + 0.9 * z2) AS card,
       CASE WHEN ro < 0.90 THEN 'succeeded' WHEN ro < 0.95 THEN 'failed'
            ELSE 'rolled_back' END AS outcome,
       1 + 2 * rb AS to_start, 0.5 + 4.5 * ro AS to_finish
FROM t
"""

PROPOSALS = """
approvals_proposal (id, agent_id, action, target, target_canonical, params,
    confidence, rationale, evidence, severity, status, block_code, routing_explanation,
    required_approvals, approvals, priority, criticality, risk, request_hash, created_at,
    decided_at, escalate_at, escalated_at, expires_at, shadow_outcome, shadow_code,
    shadow_explanation)
SELECT id, agent_id, action, 'ws-' || left(tag, 6) || '.corp.example',
       'ws-' || left(tag, 6) || '.corp.example', '{}', confidence, '', '[]', 'medium',
       status, CASE WHEN status = 'blocked' THEN 'action_not_permitted' ELSE '' END, '',
       CASE WHEN status IN ('approved', 'rejected', 'expired', 'withdrawn') THEN required
            ELSE 0 END,
       CASE WHEN status = 'approved' THEN required ELSE 0 END, 0, criticality, 'high', '',
       created_at, decided_at,
       CASE WHEN status IN ('approved', 'rejected', 'expired', 'withdrawn')
            THEN created_at + interval '15 minutes' END,
       CASE WHEN status IN ('approved', 'rejected', 'expired', 'withdrawn')
                 AND decided_at - created_at > interval '15 minutes'
            THEN created_at + interval '15 minutes' END,
       CASE WHEN status IN ('approved', 'rejected', 'expired', 'withdrawn')
            THEN created_at + interval '4 hours' END,
       '', '', ''
FROM bench_draw
"""

DECISIONS = """
approvals_decision (proposal_id, analyst_id, verdict, reason, seconds_on_card,
    created_at)
SELECT id, (%(analysts)s::int[])[who + 1],
       CASE WHEN status = 'approved' THEN 'approve' ELSE 'reject' END,
       CASE WHEN status = 'approved' THEN '' ELSE 'not convinced' END, card, decided_at
FROM bench_draw WHERE status IN ('approved', 'rejected')
UNION ALL
SELECT id, (%(analysts)s::int[])[mod(who + 1, %(k)s) + 1], 'approve', '', card,
       created_at + (decided_at - created_at) / 2
FROM bench_draw WHERE status = 'approved' AND required = 2
"""

EXECUTIONS = """
approvals_execution (id, proposal_id, status, idempotency_key, attempts,
    rollback_attempts, error, created_at, queued_at, started_at, finished_at, updated_at)
SELECT overlay(id::text placing 'e' from 1 for 1)::uuid, id, outcome, id::text, 1,
       CASE WHEN outcome = 'rolled_back' THEN 1 ELSE 0 END,
       CASE WHEN outcome = 'failed' THEN 'connector refused' ELSE '' END,
       decided_at, decided_at, decided_at + make_interval(secs => to_start),
       decided_at + make_interval(secs => to_start + to_finish),
       decided_at + make_interval(secs => to_start + to_finish)
FROM bench_draw WHERE status IN ('approved', 'auto_approved')
"""


# Indexes that no constraint needs, on the tables written, with the statement that builds each.
SECONDARY_INDEXES = """
SELECT i.relname, pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relname IN ('approvals_proposal', 'approvals_decision', 'approvals_execution')
  AND NOT x.indisprimary AND NOT x.indisunique
"""


def write(
    url: str,
    *,
    decisions: int,
    end: datetime,
    days: int,
    agents: list[tuple[int, list[str]]],
    analysts: list[int],
    progress: bool = True,
) -> int:
    """About `decisions` decisions over the `days` before `end`; returns the proposals
    written. One transaction per million proposals."""
    import psycopg

    pairs = [(agent, action) for agent, actions in agents for action in actions]
    params = {
        "pairs": len(pairs),
        "agents": [agent for agent, _ in pairs],
        "actions": [action for _, action in pairs],
        "analysts": analysts,
        "k": len(analysts),
        "start": end.timestamp() - days * 86400,
        "end": end.timestamp(),
        "days": days,
        # Nothing is decided or withdrawn after it would have expired (4 h), as in the console.
        "life": 4 * 3600 - 1,
    }
    total = math.ceil(decisions / DECISIONS_PER_PROPOSAL)
    written = 0
    with psycopg.connect(url, autocommit=True) as conn:
        offset = conn.execute("SELECT count(*) FROM approvals_proposal").fetchone()[0]
        # The secondary indexes are built once at the end rather than kept up row by row
        # (random created_at values); ids are ascending, so the primary keys only append.
        indexes = conn.execute(SECONDARY_INDEXES).fetchall() if total >= CHUNK else []
        for name, _definition in indexes:
            conn.execute(f'DROP INDEX "{name}"')
    with psycopg.connect(url, autocommit=True) as source, psycopg.connect(url) as target:
        while written < total:
            n = min(CHUNK, total - written)
            source.execute("DROP TABLE IF EXISTS bench_draw")
            source.execute(DRAW, {**params, "n": n, "offset": offset + written})
            with target.transaction():
                target.execute("SET LOCAL synchronous_commit = off")
                for statement in (PROPOSALS, DECISIONS, EXECUTIONS):
                    _copy(source, target, statement, params)
            source.execute("DROP TABLE bench_draw")
            written += n
            if progress:
                print(f"  {written:,} of {total:,} proposals written", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _name, definition in indexes:
            conn.execute(definition)
        if progress:
            print(f"  {len(indexes)} indexes rebuilt", flush=True)
    return written


def _copy(source: Any, target: Any, statement: str, params: dict[str, Any]) -> None:
    """`statement` is "table (columns) SELECT …": the SELECT's rows leave through one
    connection and enter the table through the other, as COPY blocks of text."""
    import psycopg

    into, select = statement.split("SELECT", 1)
    query = psycopg.ClientCursor(source).mogrify("SELECT" + select, params)
    with (
        source.cursor().copy(f"COPY ({query}) TO STDOUT") as out,
        target.cursor().copy(f"COPY {into.strip()} FROM STDIN") as into_table,
    ):
        for block in out:
            into_table.write(block)
