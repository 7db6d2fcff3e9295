"""Every state change of proposals, decisions, executions and the emergency stop.

Each public function owns its transaction, checks the allowed starting states with a
conditional UPDATE (or a row lock), writes exactly one audit event in that transaction, and
schedules its side effects (Celery tasks, live updates, callbacks, mail) with on_commit.
Views, the API, Celery tasks and management commands all call these; nothing else assigns a
status field. One module per family of transitions:

- submission: proposal_submit, and the circuit breaker's limits (breaker_limit)
- decisions: an analyst's verdict: proposal_approve, proposal_reject, approval_undo,
  proposal_review_confirm
- closing: the other ways out of pending: proposal_withdraw, proposal_expire,
  proposal_escalate, escalation_digest_send, agent_pending_clear
- claims: execution_claim (an execution's or a rollback's)
- executions: execution_run, execution_settle, rollback_request,
  execution_requeue_expired, execution_retry, execution_acknowledge
- bulk: proposals_decide_bulk, proposals_decide_group (several proposals, or a duplicate group
  as the page showed it, one reason, each decided on its own), proposals_review_confirm
- holds: the emergency stop, agent suspension (by a person or the circuit breaker), holding
  queued executions, and the ways out of held: execution_reconfirm_held, execution_cancel_held
- shadow: shadow_promote (a policy in shadow made live, on its score)
- sweep: beat's periodic recovery pass
- pending: a pending proposal under its lock, and the one way it leaves pending
- attention: attention checks, inserted at a team's rate and settled as caught, missed or
  expired (approvals.attention composes them)
- shared: what they all use (free-text checks, on-commit effects, the execution compare-and-set)
"""

from __future__ import annotations

from .attention import attention_check_insert, attention_checks_insert
from .bulk import (
    BulkSummary,
    proposals_decide_bulk,
    proposals_decide_group,
    proposals_review_confirm,
)
from .claims import Claim, execution_claim
from .closing import (
    ClearReport,
    agent_pending_clear,
    escalation_digest_send,
    proposal_escalate,
    proposal_expire,
    proposal_withdraw,
)
from .decisions import (
    approval_undo,
    clamp_seconds_on_card,
    proposal_approve,
    proposal_reject,
    proposal_review_confirm,
)
from .executions import (
    backoff_seconds,
    execution_acknowledge,
    execution_requeue_expired,
    execution_retry,
    execution_run,
    execution_settle,
    rollback_request,
)
from .holds import (
    agent_resume,
    agent_suspend,
    agent_suspend_by_breaker,
    emergency_stop_engage,
    emergency_stop_engaged,
    emergency_stop_release,
    execution_cancel_held,
    execution_reconfirm_held,
)
from .shadow import shadow_promote
from .shared import MAX_TEXT, MIN_REASON, SYSTEM, short_reason
from .submission import BreakerLimit, Submission, breaker_limit, proposal_submit
from .sweep import SweepReport, sweep

__all__ = [
    "MAX_TEXT",
    "MIN_REASON",
    "SYSTEM",
    "BulkSummary",
    "Claim",
    "ClearReport",
    "Submission",
    "SweepReport",
    "agent_pending_clear",
    "agent_resume",
    "agent_suspend",
    "agent_suspend_by_breaker",
    "approval_undo",
    "attention_check_insert",
    "attention_checks_insert",
    "backoff_seconds",
    "clamp_seconds_on_card",
    "escalation_digest_send",
    "emergency_stop_engage",
    "emergency_stop_engaged",
    "emergency_stop_release",
    "execution_acknowledge",
    "execution_cancel_held",
    "execution_claim",
    "execution_reconfirm_held",
    "execution_requeue_expired",
    "execution_retry",
    "execution_run",
    "execution_settle",
    "proposal_approve",
    "proposal_escalate",
    "proposal_expire",
    "proposal_reject",
    "proposal_review_confirm",
    "proposal_submit",
    "BreakerLimit",
    "breaker_limit",
    "proposal_withdraw",
    "proposals_decide_bulk",
    "proposals_decide_group",
    "proposals_review_confirm",
    "rollback_request",
    "shadow_promote",
    "short_reason",
    "sweep",
]
