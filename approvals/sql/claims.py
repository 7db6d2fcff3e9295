"""The claim of an execution and what a worker reads before the connector call."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from agents.models import EmergencyStop, PolicyState
from soc_console import rows

from ..models import (
    ConnectorCall,
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
)
from . import tables

# --- the claim --------------------------------------------------------------------------------
#
# A claim runs between an approval and its action on every execution, so it is sent as three
# plain statements in one go: one round trip on PostgreSQL (psycopg's pipeline still runs them
# in order, each on a fresh snapshot) where the ORM's locking read, update and reload took
# three, and no query building, which cost more CPU than the database spends on them.
# The first takes the stop row's lock, which orders claims against emergency_stop_engage: an
# execution either started before the stop committed, or the second statement sees the stop
# and leaves the execution for the caller to hold. The second is the compare-and-set; the
# third loads the proposal for the connector call.

# The stop row, read with its lock (" FOR UPDATE" is appended where the database has it).
STOP_ROW = f"SELECT engaged FROM {tables.STOP} WHERE id = 1"  # noqa: S608

_NOT_STOPPED = f"EXISTS (SELECT 1 FROM {tables.STOP} WHERE id = 1 AND NOT engaged)"  # noqa: S608

# An automatic approval (auto_approved, not since confirmed by an analyst) whose grant the live
# policy, the agent's newest live version as routing reads it (agents.sql), no longer gives the
# level it was approved at: a demotion (approvals.services.demotion) came after it, and it waits for
# an analyst. Two lookups on unique indexes (policy by agent and version, grant by policy and
# action) inside the claim's own statement: no round trip of its own.
_DEMOTED_SINCE_APPROVAL = f"""
p.status = %s AND p.reviewed_at IS NULL
AND COALESCE((SELECT g.level FROM {tables.GRANT} AS g
                WHERE g.action = p.action
                  AND g.policy_id = (SELECT lp.id FROM {tables.POLICY} AS lp
                                      WHERE lp.agent_id = p.agent_id AND lp.state = %s
                                      ORDER BY lp.version DESC LIMIT 1)), 0)
  < (SELECT g.level FROM {tables.GRANT} AS g
     WHERE g.policy_id = p.policy_id AND g.action = p.action)
"""  # noqa: S608

# queued → running: attempt + 1, a lease, started; not before its undo window or backoff ends,
# not while the stop is engaged or its agent suspended, nor when it was approved automatically
# and its grant has been demoted since, and never an attention check's.
_CLAIM_EXECUTION = f"""
UPDATE {tables.EXECUTION}
   SET status = %s, attempts = attempts + 1, lease_until = %s, started_at = %s, updated_at = %s
 WHERE id = %s AND status = %s AND (not_before IS NULL OR not_before <= %s)
   AND {_NOT_STOPPED}
   AND NOT EXISTS (
       SELECT 1 FROM {tables.PROPOSAL} AS p JOIN {tables.AGENT} AS a ON a.id = p.agent_id
        WHERE p.id = {tables.EXECUTION}.proposal_id
          AND (a.suspended OR p.synthetic OR ({_DEMOTED_SINCE_APPROVAL}))
   )
RETURNING {{execution}}
"""  # noqa: S608

# rolling_back stays rolling_back: rollback attempt + 1 and a lease, when no live worker holds
# it, its backoff is over, attempts are left, and the stop is not engaged. (A suspension does
# not stop an undo.)
_CLAIM_ROLLBACK = f"""
UPDATE {tables.EXECUTION}
   SET status = %s, rollback_attempts = rollback_attempts + 1, lease_until = %s,
       updated_at = %s
 WHERE id = %s AND status = %s AND (not_before IS NULL OR not_before <= %s)
   AND (lease_until IS NULL OR lease_until <= %s) AND rollback_attempts < %s
   AND {_NOT_STOPPED}
RETURNING {{execution}}
"""  # noqa: S608

_PROPOSAL_OF_EXECUTION = f"""
SELECT {{proposal}} FROM {tables.PROPOSAL}
 WHERE id = (SELECT proposal_id FROM {tables.EXECUTION} WHERE id = %s)
"""  # noqa: S608


@dataclass(frozen=True)
class Claimed:
    stop_row: bool  # whether the stop row exists (and so was locked)
    stopped: bool  # whether the emergency stop is engaged
    execution: Execution | None  # with its proposal, when the compare-and-set won


def claim(execution_id: uuid.UUID | str, now: datetime, *, rollback: bool) -> Claimed:
    """The claim's three statements, sent together, inside the caller's transaction."""
    connection = transaction.get_connection()
    ops = connection.ops
    when = ops.adapt_datetimefield_value(now)
    lease = ops.adapt_datetimefield_value(now + timedelta(seconds=settings.EXECUTION_LEASE_SECONDS))
    key = Execution._meta.pk.get_db_prep_value(execution_id, connection)
    columns = rows.columns(Execution, connection)
    if rollback:
        update = _CLAIM_ROLLBACK.format(execution=columns)
        params = [ExecutionStatus.ROLLING_BACK, lease, when, key, ExecutionStatus.ROLLING_BACK]
        params += [when, when, settings.EXECUTION_MAX_ATTEMPTS]
    else:
        update = _CLAIM_EXECUTION.format(execution=columns)
        params = [ExecutionStatus.RUNNING, lease, when, when, key, ExecutionStatus.QUEUED, when]
        params += [ProposalStatus.AUTO_APPROVED, PolicyState.LIVE]
    connection.ensure_connection()
    together = getattr(connection.connection, "pipeline", contextlib.nullcontext)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with (
        connection.cursor() as stop,
        connection.cursor() as claimed,
        connection.cursor() as proposal,
    ):
        # Errors surface when the pipeline ends: translated there as Django's own would be.
        with connection.wrap_database_errors, together():
            stop.execute(STOP_ROW + lock)
            claimed.execute(update, params)
            proposal.execute(
                _PROPOSAL_OF_EXECUTION.format(proposal=rows.columns(Proposal, connection)), [key]
            )
        stop_row, claimed_row, proposal_row = (
            stop.fetchone(),
            claimed.fetchone(),
            proposal.fetchone(),
        )
    execution = None
    if claimed_row is not None:
        execution = rows.instance(Execution, claimed_row, connection)
        Execution.proposal.field.set_cached_value(
            execution, rows.instance(Proposal, proposal_row, connection)
        )
    return Claimed(stop_row is not None, bool(stop_row and stop_row[0]), execution)


def stop_engaged_locked() -> bool:
    """Whether the emergency stop is on, holding its row's lock until commit (creating the row
    on a fresh database).

    Engaging the stop takes the same lock, so a claim either finished before the stop
    committed or sees it. The lock is exclusive on purpose: a shared one would let claims that
    overlap keep the stop waiting for as long as a backlog lasts.
    """
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        # One plain statement where get_or_create takes a savepoint and two: on a claim's path.
        with connection.cursor() as cursor:
            cursor.execute(STOP_ROW + " FOR UPDATE")
            row = cursor.fetchone()
        if row is not None:
            return bool(row[0])
    stop, _ = EmergencyStop.objects.select_for_update().get_or_create(id=1)
    return stop.engaged


# The simulated connectors' ledger, read before every connector call, between a claim's commit
# and the call: the ORM took 0.8-1.0 ms of the worker's CPU to build this one read, the
# statement 0.19-0.28 ms (measured in the worker's process under bench.execute).
_LEDGER_RESULT = f"SELECT result FROM {tables.LEDGER} WHERE idempotency_key = %s"  # noqa: S608


def ledger_result(idempotency_key: str) -> dict | None:
    """What the ledger recorded for this key, or None."""
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        cursor.execute(_LEDGER_RESULT, [idempotency_key])
        row = cursor.fetchone()
    if row is None:
        return None
    return ConnectorCall._meta.get_field("result").from_db_value(row[0], None, connection)
