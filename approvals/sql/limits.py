"""The intake's limits (circuit breaker, blast-radius budgets) and the locks that keep one
escalation digest and one sweep at a time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from ..models import (
    ProposalStatus,
)
from . import tables

# --- the intake's limits ---------------------------------------------------------------------
#
# Both run on the submission path, so each is one plain statement whose work is bounded by the
# limit it checks, not by the agent's history.

# The circuit breaker: the agent's open proposals and its proposals of the last minute, each
# counted only up to the limit (+1 would be enough; the LIMIT keeps a flood from costing more
# than the limit to count). The first reads the partial index proposal_agent_pending, the
# second proposal_agent_recent (agent, -created_at): two index range scans of at most the
# limit's rows, in one round trip (measured ~0.2 ms on a laptop's PostgreSQL with 300 open).
#
# A count is not taken at all when the whole table cannot hold as many rows as its limit: no
# row takes less than 28 bytes of the table's file (its 4-byte line pointer and its 24-byte
# header, padded), so the file's size over 28 bounds every count of it, visible rows or not,
# and a limit above that bound cannot be reached. A limit set out of reach (10^9 holds any
# load) then costs a stat of the file instead of a count of every open proposal (7-8 ms at
# 5,300 open with PostgreSQL plans reading them all). The scalar sub-selects are evaluated only
# when their CASE asks for them.
_BREAKER_ROW_BYTES = 28
_BREAKER = f"""
SELECT
    CASE WHEN %(max_pending)s <= bound.rows_at_most THEN
        (SELECT COUNT(*) FROM (SELECT 1 FROM {tables.PROPOSAL}
                                WHERE agent_id = %(agent)s AND status = %(pending)s
                                LIMIT %(max_pending)s) AS open_rows)
    END,
    CASE WHEN %(max_per_minute)s <= bound.rows_at_most THEN
        (SELECT COUNT(*) FROM (SELECT 1 FROM {tables.PROPOSAL}
                                WHERE agent_id = %(agent)s AND created_at > %(since)s
                                LIMIT %(max_per_minute)s) AS recent_rows)
    END
FROM (SELECT pg_relation_size('{tables.PROPOSAL}') / {_BREAKER_ROW_BYTES} AS rows_at_most) AS bound
"""  # noqa: S608

# SQLite has no file size per table: it counts, as above, up to the limits.
_BREAKER_COUNTED = f"""
SELECT
    (SELECT COUNT(*) FROM (SELECT 1 FROM {tables.PROPOSAL}
                            WHERE agent_id = %(agent)s AND status = %(pending)s
                            LIMIT %(max_pending)s) AS open_rows),
    (SELECT COUNT(*) FROM (SELECT 1 FROM {tables.PROPOSAL}
                            WHERE agent_id = %(agent)s AND created_at > %(since)s
                            LIMIT %(max_per_minute)s) AS recent_rows)
"""  # noqa: S608


def breaker_counts(
    agent_id: int, *, since: datetime, max_pending: int, max_per_minute: int
) -> tuple[int | None, int | None]:
    """(open proposals, proposals since `since`) of the agent, each counted up to its limit;
    None for a count not taken because the table holds fewer rows than its limit."""
    connection = transaction.get_connection()
    statement = _BREAKER if connection.vendor == "postgresql" else _BREAKER_COUNTED
    with connection.cursor() as cursor:
        cursor.execute(
            statement,
            {
                "agent": agent_id,
                "pending": ProposalStatus.PENDING.value,
                "since": since,
                "max_pending": max_pending,
                "max_per_minute": max_per_minute,
            },
        )
        open_count, recent = cursor.fetchone()
    return (
        None if open_count is None else int(open_count),
        None if recent is None else int(recent),
    )


# The blast-radius budget of one grant: its automatic executions in the last hour, the distinct
# targets among them, and whether this target is one of them. Asked only when routing would
# run the proposal at once; reads the partial index proposal_agent_auto_recent, which holds
# only auto-approved rows, so it reads at most the budget's own worth of rows.
_BUDGET = f"""
SELECT COUNT(*), COUNT(DISTINCT target_canonical),
       COALESCE(MAX(CASE WHEN target_canonical = %s THEN 1 ELSE 0 END), 0)
  FROM {tables.PROPOSAL}
 WHERE agent_id = %s AND action = %s AND status = %s AND created_at > %s
"""  # noqa: S608

# Automatic executions of one agent's action are counted one submission at a time: a
# transaction-level advisory lock keyed by the agent and the action (PostgreSQL; SQLite's
# IMMEDIATE transactions already serialise writers), held until the proposal commits, so that
# concurrent submissions cannot each see the last unit of budget free.
_BUDGET_LOCK = "SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))"


@dataclass(frozen=True)
class BudgetSpent:
    executions: int
    targets: int
    target_seen: bool


def budget_spent(
    agent_id: int, action: str, target: str, *, since: datetime, lock: bool = True
) -> BudgetSpent:
    """The grant's spent budget; `lock=False` for a shadow policy's judgement, which runs
    nothing and so needs no serialising against concurrent submissions."""
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        if lock and connection.vendor == "postgresql":
            cursor.execute(_BUDGET_LOCK, [agent_id, action])
        cursor.execute(
            _BUDGET, [target, agent_id, action, ProposalStatus.AUTO_APPROVED.value, since]
        )
        executions, targets, seen = cursor.fetchone()
    return BudgetSpent(int(executions), int(targets), bool(seen))


# The escalation digest: one sweep at a time decides whether a window's digest is due.
_DIGEST_LOCK = "SELECT pg_advisory_xact_lock(hashtext('soc.escalation_digest'))"


def digest_lock() -> None:
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_DIGEST_LOCK)


# --- one sweep at a time ----------------------------------------------------------------------
#
# Beat's sweep recovers executions, expires and escalates proposals and sends the digest. With
# two schedulers (a second beat started by mistake, or a standby taking over while the old one
# still runs) or a tick that outlasts the interval, two sweeps could overlap and dispatch the
# same lost execution twice. Each step is a compare-and-set, so nothing would happen twice, but
# the second sweep would only do the work again: it takes this lock or skips its turn.
#
# A session lock, not a transaction's: the sweep's steps are each their own service
# transaction (an audit event each, taking the chain's lock in turn), and holding one
# transaction open across all of them would hold the audit chain against every submission
# meanwhile. The lock is released when the sweep ends, and PostgreSQL releases it by itself
# if the worker dies, with its session.
_SWEEP_LOCK = "SELECT pg_try_advisory_lock(hashtext('soc.sweep'))"
_SWEEP_UNLOCK = "SELECT pg_advisory_unlock(hashtext('soc.sweep'))"

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def sweep_lock() -> Iterator[bool]:
    """True inside the block when this sweep holds the lock, False when another sweep does.
    (SQLite has one writer at a time and `make run` one beat: always True there.)"""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute(_SWEEP_LOCK)
        held = bool(cursor.fetchone()[0])
    if not held:
        yield False
        return
    try:
        yield True
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute(_SWEEP_UNLOCK)
        except Exception:
            # The session may still hold the lock: end it rather than hand it back to the pool
            # with the lock, which would make every later sweep skip.
            logger.warning("sweep lock not released; closing the connection", exc_info=True)
            if connection.connection is not None:
                connection.connection.close()
            connection.close()
