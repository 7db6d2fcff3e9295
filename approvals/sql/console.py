"""What the console reads on every update: the top bar's counters, a group's best cases, a
proposal's progress; and the ORM's relation caches filled where the answer is known."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from agents.models import Agent
from soc_console import rows

from ..models import (
    ConnectorState,
    Decision,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
)
from . import tables

# --- the console's counters -------------------------------------------------------------------

# The top bar's six counts in one statement, one pass over the pending proposals: live updates
# carry them, and six ORM counts cost several milliseconds of CPU each time.
_COUNTERS = f"""
SELECT
    COUNT(*),
    COUNT(*) FILTER (WHERE escalated_at IS NOT NULL),
    COUNT(*) FILTER (WHERE approvals > 0),
    (SELECT COUNT(*) FROM {tables.EXECUTION} WHERE status = %(held)s),
    (SELECT COUNT(*) FROM {tables.PROPOSAL}
        WHERE status = %(auto_approved)s AND reviewed_at IS NULL),
    (SELECT COUNT(*) FROM {tables.EXECUTION}
        WHERE status IN (%(failed)s, %(rollback_failed)s) AND acknowledged_at IS NULL)
FROM {tables.PROPOSAL}
WHERE status = %(pending)s
"""  # noqa: S608


def counters() -> tuple[int, int, int, int, int, int]:
    """(pending, escalated, awaiting a second approval, held, unreviewed auto, failed and not
    yet acknowledged: the ones that still need attention)."""
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            _COUNTERS,
            {
                "pending": ProposalStatus.PENDING.value,
                "auto_approved": ProposalStatus.AUTO_APPROVED.value,
                "held": ExecutionStatus.HELD.value,
                "failed": ExecutionStatus.FAILED.value,
                "rollback_failed": ExecutionStatus.ROLLBACK_FAILED.value,
            },
        )
        pending, escalated, awaiting_second, held, unreviewed_auto, failed = cursor.fetchone()
    return pending, escalated, awaiting_second, held, unreviewed_auto, failed


# --- a duplicate group's best cases ------------------------------------------------------------

# The pending proposals on some targets, folded by action, target and agent (the agent a card
# names: an attention check's shown agent, else the proposal's): each agent's count, its best
# case (most confident, then most evidence, then the queue's order) and the place of its first
# card, each pair's lead (the queue's first), and the audit log's head read in the same
# statement (the group's stamp, see selectors.groups). Only the best and lead rows leave the
# database. It runs for every batch of new proposals that land beside open ones, and building
# it with the ORM's window expressions each time cost more than everything else the batch
# does: a batch of five arrivals on crowded targets took 1.4 ms of the web process's CPU with
# this statement against 3.2-3.3 ms with the ORM's (live.touched_contexts in-process, 200
# batches at 8,700 pending, analysed; PostgreSQL's own time ~0.7 ms either way).
_EVIDENCE_COUNT = {
    "postgresql": "COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(p.evidence) = 'array' "
    "THEN p.evidence END), 0)",
    # SQLite's json_array_length is 0 for any JSON value but an array.
    "sqlite": "COALESCE(json_array_length(p.evidence), 0)",
}
# The queue's order (selectors.cards._QUEUE_ORDER) over the rows of one pair.
_QUEUE_ORDER = "p.priority DESC, p.created_at ASC"
_PAIR_ROWS = """
SELECT target, action, shown, voices, best, lead, confidence, rationale, evidence, params,
       (SELECT seq FROM {audit} ORDER BY seq DESC LIMIT 1) AS head, voice_priority, voice_since,
       suspended
  FROM (
    SELECT p.target_canonical AS target, p.action, p.shown, p.confidence, p.rationale,
           p.evidence, p.params, p.suspended,
           COUNT(*) OVER voice AS voices,
           MAX(p.priority) OVER voice AS voice_priority,
           FIRST_VALUE(p.created_at) OVER (voice ORDER BY {queue_order}) AS voice_since,
           ROW_NUMBER() OVER (voice ORDER BY p.confidence DESC, {evidence_count} DESC,
                                             {queue_order}) AS best,
           ROW_NUMBER() OVER (PARTITION BY p.target_canonical, p.action
                              ORDER BY {queue_order}) AS lead
      FROM (SELECT q.target_canonical, q.action, q.confidence, q.rationale, q.evidence,
                   q.params, q.priority, q.created_at, COALESCE(c.shown_agent, a.slug) AS shown,
                   a.suspended
              FROM {proposal} AS q
              JOIN {agent} AS a ON a.id = q.agent_id
              LEFT JOIN {attention} AS c ON c.proposal_id = q.id
             WHERE q.status = %s AND q.target_canonical IN ({targets})) AS p
    WINDOW voice AS (PARTITION BY p.target_canonical, p.action, p.shown)
  ) AS ranked
 WHERE best = 1 OR lead = 1
"""


@dataclass(frozen=True)
class PairRow:
    """One row of `pair_rows`: an agent's best case on a pair, or the pair's lead, or both."""

    target: str
    action: str
    shown: str  # the agent the card names
    voices: int  # that agent's pending proposals on the pair
    best: int  # 1 for the agent's best case
    lead: int  # 1 for the pair's first card in the queue
    confidence: float
    rationale: str
    evidence: Any
    params: Any
    head: int | None  # the audit log's head as the rows were read
    voice_priority: float  # the highest priority among the agent's proposals on the pair
    voice_since: Any  # the time of its first card in the queue (compared with the pair's others)
    suspended: bool  # the proposal's agent is suspended: none of its proposals may be approved


def pair_rows(targets: set[str]) -> list[PairRow]:
    """The best and lead rows of the pending proposals on these targets (see _PAIR_ROWS)."""
    if not targets:
        return []
    connection = transaction.get_connection()
    statement = _PAIR_ROWS.format(
        audit=tables.AUDIT_EVENT,
        proposal=tables.PROPOSAL,
        agent=tables.AGENT,
        attention=tables.ATTENTION_CHECK,
        evidence_count=_EVIDENCE_COUNT[connection.vendor],
        queue_order=_QUEUE_ORDER,
        targets=", ".join(["%s"] * len(targets)),
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [ProposalStatus.PENDING.value, *sorted(targets)])
        fetched = cursor.fetchall()
    # Columns in PairRow's order; the JSON ones come back as text.
    return [PairRow(*row[:8], _json(row[8]), _json(row[9]), *row[10:]) for row in fetched]


def _json(value: Any) -> Any:
    """A JSON column as a raw statement returns it: text on both databases here."""
    return json.loads(value) if isinstance(value, str) else value


# --- what surrounds new proposals --------------------------------------------------------------

# Which of some new proposals' targets have anything around them: two or more proposals pending
# there, or a state recorded by one of the connectors their actions use (a state of {} records
# nothing). Every batch of arrivals asks this, and most are alone on their target and need
# nothing more. The ORM's two queries (a GROUP BY and the states) took 0.64 ms of the web
# process's CPU per batch of five arrivals, this statement 0.09 ms (in-process, 300 batches on
# crowded targets at 8,500 pending, analysed).
_AROUND = """
SELECT target_canonical, NULL FROM {proposal}
 WHERE status = %s AND target_canonical IN ({targets})
 GROUP BY target_canonical HAVING COUNT(*) >= 2
UNION ALL
SELECT target, connector FROM {state}
 WHERE connector IN ({connectors}) AND target IN ({targets}) AND state <> '{{}}'
"""


def targets_around(wanted: dict[str, set[str]]) -> set[str]:
    """Of the targets in `wanted` (connector -> its new proposals' targets there), those with
    two or more pending proposals, or a state that connector records for them."""
    targets = sorted(set().union(*wanted.values())) if wanted else []
    if not targets:
        return set()
    connectors = sorted(wanted)
    statement = _AROUND.format(
        proposal=tables.PROPOSAL,
        state=tables.CONNECTOR_STATE,
        targets=", ".join(["%s"] * len(targets)),
        connectors=", ".join(["%s"] * len(connectors)),
    )
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(statement, [ProposalStatus.PENDING.value, *targets, *connectors, *targets])
        fetched = cursor.fetchall()
    # Another connector's state on the same target says nothing about these proposals.
    return {
        target for target, connector in fetched if connector is None or target in wanted[connector]
    }


# The connectors' rows for some targets, for the cards' contexts (connector_state): read with
# every batch of contexts. With the ORM's query, the states of a batch of five took 0.46 ms of
# CPU beside the group statement, with this one 0.10 ms (measured as above).
_STATES = """
SELECT {columns} FROM {state} WHERE connector IN ({connectors}) AND target IN ({targets})
"""


def connector_states(connectors: set[str], targets: set[str]) -> list[ConnectorState]:
    """The connector's state rows of these targets, any of these connectors."""
    if not connectors or not targets:
        return []
    connection = transaction.get_connection()
    statement = _STATES.format(
        columns=rows.columns(ConnectorState, connection),
        state=tables.CONNECTOR_STATE,
        connectors=", ".join(["%s"] * len(connectors)),
        targets=", ".join(["%s"] * len(targets)),
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*sorted(connectors), *sorted(targets)])
        fetched = cursor.fetchall()
    return [rows.instance(ConnectorState, row, connection) for row in fetched]


# --- a proposal's progress -------------------------------------------------------------------

# Every live update of a submission or a decision asks whether anything moved since its row was
# read: one plain statement instead of building the join with values_list each time (timeit on
# the development machine: ~0.1-0.2 ms per call against ~0.5-0.7 ms for the ORM's query).
_PROGRESS = f"""
SELECT p.status, p.approvals, e.status FROM {tables.PROPOSAL} AS p
  LEFT JOIN {tables.EXECUTION} AS e ON e.proposal_id = p.id
 WHERE p.id = %s
"""  # noqa: S608


def proposal_progress(proposal_id: uuid.UUID | str) -> tuple[str, int, str | None] | None:
    """(status, approvals, execution status) as committed, or None for no such proposal."""
    connection = transaction.get_connection()
    key = Proposal._meta.pk.get_db_prep_value(proposal_id, connection)  # SQLite: bare hex
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS, [key])
        row = cursor.fetchone()
    return (row[0], row[1], row[2]) if row else None


# A new card's live update asks both whether its proposal moved since it was written and how
# many pending cards come before it in the queue, counted up to a page's worth (where the card
# goes: approvals.placement). In a storm most new cards are placed below the page by that count
# alone, so one statement answers both: ~0.15 ms of the web process's CPU per card against
# ~0.85 ms for the progress statement and the ORM's count (in-process, 500 calls each at 3,600
# pending, never analysed).
_PROGRESS_AHEAD = f"""
SELECT p.status, p.approvals, e.status,
       (SELECT COUNT(*) FROM (SELECT 1 FROM {tables.PROPOSAL} AS q
                               WHERE q.status = %s
                                 AND (q.priority > p.priority
                                      OR (q.priority = p.priority AND q.created_at < p.created_at))
                               LIMIT %s) AS ahead)
  FROM {tables.PROPOSAL} AS p
  LEFT JOIN {tables.EXECUTION} AS e ON e.proposal_id = p.id
 WHERE p.id = %s
"""  # noqa: S608


def proposal_progress_ahead(
    proposal_id: uuid.UUID | str, up_to: int
) -> tuple[tuple[str, int, str | None] | None, int]:
    """The proposal's progress (as proposal_progress) and the number of pending proposals
    before it in the queue's order, counted up to `up_to`."""
    connection = transaction.get_connection()
    key = Proposal._meta.pk.get_db_prep_value(proposal_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS_AHEAD, [ProposalStatus.PENDING.value, up_to, key])
        row = cursor.fetchone()
    return ((row[0], row[1], row[2]), int(row[3])) if row else (None, 0)


# --- the ORM's relation caches: answers known without a query -------------------------------


def no_decisions_yet(proposal: Proposal) -> None:
    """Tell a new proposal's readers it has no decisions, without a query.

    Setting the prefetch cache directly costs ~30 µs; the public route,
    prefetch_related_objects with an empty queryset, costs ~550 µs of query building on every
    submission (measured with timeit on the development machine). The cached queryset is
    given as already read: its readers (the live card, the API's payload, the prefetch that
    publishing asks for) would otherwise compile `none()` once more to find it empty, ~0.12 ms
    (0.04 against 0.16 ms for that prefetch, timeit, 2,000 runs).
    """
    none = Decision.objects.none()
    none._result_cache = []
    none._prefetch_done = True
    proposal._prefetched_objects_cache = {"decisions": none}


def no_execution_yet(proposal: Proposal) -> None:
    """Tell readers of a proposal that has no execution (pending, blocked, undone) so, without
    the query `proposal.execution` would otherwise send to find nothing."""
    Proposal.execution.related.set_cached_value(proposal, None)


def agent_if_loaded(proposal: Proposal) -> Agent | None:
    """The proposal's agent if it was read along with it, else None, never a query."""
    return proposal.agent if Proposal.agent.is_cached(proposal) else None
