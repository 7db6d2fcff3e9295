"""The demo's demoted agent: phish-hunter loses its autonomy on quarantine_email.

Played through the real services, not generated: an automatic quarantine runs, an analyst
releases the message (a supplier's genuine invoice), and the rollback of that automatic
action fires the grant's rule, so the new policy version, the grant.demoted event with its
evidence and the managers' mail are exactly what a real demotion leaves.
"""

from __future__ import annotations

import random
import uuid

from django.contrib.auth.models import User

from agents.models import Agent
from audit.models import AuditEvent

from .. import services
from ..models import ProposalStatus

AGENT = "phish-hunter"
ACTION = "quarantine_email"


def seed_demotion(rng: random.Random) -> AuditEvent | None:
    """Demote phish-hunter's quarantine_email; None when there is nothing to demote (it is at
    level 2 or below already, as after an earlier seed)."""
    agent = Agent.objects.get(slug=AGENT)
    policy = agent.current_policy
    if policy is None or policy.level_for(ACTION) <= 2:
        return None
    message = rng.randint(10**6, 10**7)
    proposal = services.proposal_submit(
        agent=agent,
        api_key=None,
        action=ACTION,
        target=f"<{message}@mail.example>",
        params={},
        confidence=0.97,
        rationale="Invoice from a first-time sender with a macro-enabled attachment; "
        "the sender domain was registered 3 days ago.",
        evidence=[{"kind": "email", "ref": f"MSG-{message}"}],
        severity="medium",
        idempotency_key=uuid.uuid4().hex,
        request_hash="seed",
    ).proposal
    if proposal.status != ProposalStatus.AUTO_APPROVED:
        return None
    execution_id = proposal.execution.id
    services.execution_run(execution_id=execution_id)
    services.rollback_request(
        execution_id=execution_id,
        analyst=User.objects.get(username="senior"),
        reason="A supplier's genuine invoice: finance confirmed the new domain; released.",
    )
    services.execution_run(execution_id=execution_id, rollback=True)
    return AuditEvent.objects.filter(event_type="grant.demoted").order_by("-seq").first()
