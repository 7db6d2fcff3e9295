"""What a generated history writes: rows in the column order of their COPY, and audit events
numbered so that one proposal's events keep their causal order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.log import PendingEvent


@dataclass
class Generated:
    proposals: list[tuple[Any, ...]] = field(default_factory=list)
    decisions: list[tuple[Any, ...]] = field(default_factory=list)
    executions: list[tuple[Any, ...]] = field(default_factory=list)
    checks: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[datetime, int, PendingEvent]] = field(default_factory=list)
    # Tie-breaker between events of the same instant: it keeps counting when the rows are
    # flushed and cleared, so that events still waiting to be written stay in order.
    order: int = 0

    def event(
        self,
        at: datetime,
        actor_type: str,
        actor: str,
        kind: str,
        pid: Any,
        data: dict,
    ) -> None:
        self.order += 1
        self.events.append((at, self.order, PendingEvent(at, actor_type, actor, kind, pid, data)))


PROPOSAL_COLUMNS = (
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
    "policy_id",
    "policy_version",
    "shadow_policy_id",
    "shadow_version",
    "shadow_outcome",
    "shadow_code",
    "shadow_explanation",
    "criticality",
    "risk",
    "priority",
    "request_hash",
    "created_at",
    "decided_at",
    "escalate_at",
    "escalated_at",
    "expires_at",
    "synthetic",
)
CHECK_COLUMNS = (
    "proposal_id",
    "team_id",
    "flaw",
    "explanation",
    "shown_agent",
    "outcome",
    "analyst_id",
    "seconds_on_card",
    "created_at",
    "decided_at",
)
DECISION_COLUMNS = (
    "proposal_id",
    "analyst_id",
    "verdict",
    "reason",
    "seconds_on_card",
    "created_at",
)
EXECUTION_COLUMNS = (
    "id",
    "proposal_id",
    "status",
    "idempotency_key",
    "attempts",
    "rollback_attempts",
    "result",
    "error",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "updated_at",
)
