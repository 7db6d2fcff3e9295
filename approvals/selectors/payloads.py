"""What a proposal looks like to agents and callbacks: the API's payload and its parts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet

from ..models import Decision, Execution, Proposal, ProposalStatus


def proposals_with_details() -> QuerySet[Proposal]:
    return Proposal.objects.select_related("agent", "execution", "asset").prefetch_related(
        Prefetch("decisions", queryset=Decision.objects.select_related("analyst"))
    )


def agent_proposals(*, agent_id: int, status: str | None = None) -> QuerySet[Proposal]:
    # An attention check belongs to the console's own agent, never to the caller; the filter
    # says so again, so that no change of owner could ever list one to an agent.
    qs = proposals_with_details().filter(agent_id=agent_id, synthetic=False).order_by("-created_at")
    if status:
        qs = qs.filter(status=status)
    return qs


def execution_payload(execution: Execution | None) -> dict[str, Any] | None:
    if execution is None:
        return None
    return {
        "id": str(execution.id),
        "status": execution.status,
        "attempts": execution.attempts,
        # Not before this moment: the approval's undo window, or a retry's backoff.
        "not_before": execution.not_before,
        "result": execution.result,
        "error": execution.error or None,
        "updated_at": execution.updated_at,
    }


def execution_of(proposal: Proposal) -> Execution | None:
    try:
        return proposal.execution
    except Execution.DoesNotExist:
        return None


# What routing made of a proposal, from its status now: a decision, an expiry or a withdrawal
# came after a proposal routed to the queue.
_ROUTED_TO_QUEUE = {
    ProposalStatus.APPROVED,
    ProposalStatus.REJECTED,
    ProposalStatus.EXPIRED,
    ProposalStatus.WITHDRAWN,
}


def routing_payload(proposal: Proposal) -> dict[str, Any]:
    """How the guardrails judged the proposal when it arrived (DESIGN §11, Additions)."""
    status = proposal.status
    return {
        "outcome": ProposalStatus.PENDING.value if status in _ROUTED_TO_QUEUE else status,
        "code": proposal.block_code or None,
        "reason": proposal.routing_explanation,
        "policy_version": proposal.policy_version,
        # Which version in shadow judged it too; what that version would have done is never
        # shown to the agent.
        "shadow_version": proposal.shadow_version,
    }


def asset_payload(proposal: Proposal) -> dict[str, Any] | None:
    """The inventoried asset the target matched (the most critical, when several did), with
    the criticality the target was judged at: the asset's then, or higher for a target that
    may be more than the asset (agents.selectors.InventoryMatch.beyond)."""
    if proposal.asset_id is None:
        return None
    return {"identifier": proposal.asset.identifier, "criticality": proposal.criticality}


def blocked_code(proposal: Proposal) -> str | None:
    """The 403's code of a blocked proposal; None for any other (routing.code also names why
    one that would have run at once waits for a human: `budget_exhausted`)."""
    if proposal.status != ProposalStatus.BLOCKED:
        return None
    return proposal.block_code or None


def proposal_payload(proposal: Proposal) -> dict[str, Any]:
    """The proposal as the agent API, callbacks and exports show it (DESIGN §11)."""
    return {
        "id": str(proposal.id),
        "status": proposal.status,
        "code": blocked_code(proposal),
        "explanation": proposal.routing_explanation,
        "agent": proposal.agent.slug,
        "action": proposal.action,
        "target": proposal.target,
        "target_canonical": proposal.target_canonical or proposal.target,
        "asset": asset_payload(proposal),
        "routing": routing_payload(proposal),
        "params": proposal.params,
        "confidence": proposal.confidence,
        "rationale": proposal.rationale,
        "evidence": proposal.evidence,
        "severity": proposal.severity,
        "criticality": proposal.criticality,
        "required_approvals": proposal.required_approvals,
        "approvals": proposal.approvals,
        "policy_version": proposal.policy_version,
        "created_at": proposal.created_at,
        "expires_at": proposal.expires_at,
        "decisions": [
            {
                "verdict": d.verdict,
                "reason": d.reason,
                "analyst": d.analyst.get_username(),
                "at": d.created_at,
            }
            for d in proposal.decisions.all()
        ],
        "execution": execution_payload(execution_of(proposal)),
        "url": f"{settings.PUBLIC_URL}/api/v1/proposals/{proposal.id}/",
        "console_url": f"{settings.PUBLIC_URL}/proposals/{proposal.id}/",
    }
