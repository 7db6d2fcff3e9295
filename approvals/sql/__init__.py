"""Every hand-written SQL statement of approvals, and every use of the ORM's internal caches:
the claim and the connector's ledger (`claims`), the intake's limits and the one-at-a-time
locks (`limits`), what the console reads on every update (`console`), the tables they name
(`tables`).

A statement is written by hand here only where the ORM costs more than the database spends
answering (each says what it saves), and nowhere else in approvals. Table names come from the
models' `_meta`, statuses are parameters taken from the enums (hence the `noqa: S608`: nothing
from a request is ever formatted into a statement). Rows become model instances
through soc_console.rows (the one place that calls the ORM's `from_db` and converters). `console`
also fills the ORM's relation caches where the service knows the answer and a query
would only find nothing; nothing outside this package touches them in approvals.
"""

from __future__ import annotations

from .claims import STOP_ROW, Claimed, claim, ledger_result, stop_engaged_locked
from .console import (
    PairRow,
    agent_if_loaded,
    connector_states,
    counters,
    no_decisions_yet,
    no_execution_yet,
    pair_rows,
    proposal_progress,
    proposal_progress_ahead,
    targets_around,
)
from .limits import BudgetSpent, breaker_counts, budget_spent, digest_lock, sweep_lock

__all__ = [
    "STOP_ROW",
    "BudgetSpent",
    "Claimed",
    "PairRow",
    "agent_if_loaded",
    "breaker_counts",
    "budget_spent",
    "claim",
    "connector_states",
    "counters",
    "digest_lock",
    "ledger_result",
    "no_decisions_yet",
    "no_execution_yet",
    "pair_rows",
    "proposal_progress",
    "proposal_progress_ahead",
    "stop_engaged_locked",
    "sweep_lock",
    "targets_around",
]
