"""Hand-built history whose report figures are known in advance.

Proposals are written directly with explicit timestamps: the services stamp `now()`, and a
report test needs latencies and shifts that it chose. Everything else (agents, policies,
users) comes from the usual factories.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User

from agents.models import Agent
from approvals.models import CHECKS_AGENT, AttentionCheck, Decision, Execution, Proposal

# A Wednesday morning, inside office hours (the test settings run in UTC).
BASE = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


def proposal(
    agent: Agent,
    *,
    created_at: datetime,
    status: str = "approved",
    action: str = "isolate_host",
    confidence: float = 0.8,
    criticality: str = "medium",
    decided_after: timedelta | None = timedelta(minutes=5),
    analyst: User | None = None,
    card: float | None = 10.0,
    execution: str | None = None,
    escalated: bool = False,
    required_approvals: int = 1,
) -> Proposal:
    decided_at = created_at + decided_after if decided_after is not None else None
    queued = status in ("pending", "approved", "rejected", "expired", "withdrawn")
    item = Proposal.objects.create(
        agent=agent,
        action=action,
        target=f"ws-{uuid.uuid4().hex[:6]}.corp.example",
        confidence=confidence,
        status=status,
        criticality=criticality,
        risk="high",
        required_approvals=required_approvals if queued else 0,
        approvals=1 if status == "approved" else 0,
        created_at=created_at,
        decided_at=decided_at,
        escalate_at=created_at + timedelta(minutes=15) if queued else None,
        escalated_at=created_at + timedelta(minutes=15) if escalated else None,
        expires_at=created_at + timedelta(hours=4) if queued else None,
    )
    if analyst is not None and status in ("approved", "rejected") and decided_at:
        Decision.objects.create(
            proposal=item,
            analyst=analyst,
            verdict="approve" if status == "approved" else "reject",
            reason="" if status == "approved" else "not convinced",
            seconds_on_card=card,
            created_at=decided_at,
        )
    if execution is not None and decided_at:
        Execution.objects.create(
            proposal=item,
            status=execution,
            idempotency_key=uuid.uuid4().hex,
            created_at=decided_at,
            queued_at=decided_at,
            started_at=decided_at + timedelta(seconds=2),
            finished_at=decided_at + timedelta(seconds=5),
            updated_at=decided_at + timedelta(seconds=5),
        )
    return item


def attention_check(
    analyst: User,
    *,
    decided_at: datetime,
    caught: bool,
    shown_agent: str = "triage-bot",
    card: float | None = 12.0,
) -> Proposal:
    """An attention check the analyst decided at `decided_at`: rejected (caught, with its
    decision) or approved (missed: withdrawn by the console, no decision, no execution)."""
    owner, _ = Agent.objects.get_or_create(slug=CHECKS_AGENT)
    created_at = decided_at - timedelta(minutes=2)
    item = Proposal.objects.create(
        agent=owner,
        action="isolate_host",
        target=f"ws-{uuid.uuid4().hex[:6]}.corp.example",
        confidence=0.8,
        status="rejected" if caught else "withdrawn",
        criticality="medium",
        risk="high",
        required_approvals=1,
        created_at=created_at,
        decided_at=decided_at,
        escalate_at=created_at + timedelta(minutes=15),
        expires_at=created_at + timedelta(hours=4),
        synthetic=True,
    )
    if caught:
        Decision.objects.create(
            proposal=item,
            analyst=analyst,
            verdict="reject",
            reason="the rationale names another host",
            seconds_on_card=card,
            created_at=decided_at,
        )
    AttentionCheck.objects.create(
        proposal=item,
        flaw="other_host",
        explanation="The rationale describes another host.",
        shown_agent=shown_agent,
        outcome="caught" if caught else "missed",
        analyst=analyst,
        seconds_on_card=card,
        created_at=created_at,
        decided_at=decided_at,
    )
    return item
