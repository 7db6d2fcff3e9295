"""The data of each proposal event, built in one place.

The services record these events as proposals move, and the history generator records them
for a year of demo history; when both build the data here, a generated event cannot differ
in shape from a real one. Each builder takes exactly the facts its event records.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

SUBMITTED = "proposal.submitted"
APPROVAL_RECORDED = "proposal.approval_recorded"
APPROVED = "proposal.approved"
REJECTED = "proposal.rejected"
ESCALATED = "proposal.escalated"
EXPIRED = "proposal.expired"


def submitted(
    *,
    agent: str,
    action: str,
    target: str,
    target_canonical: str,
    confidence: float,
    status: str,
    policy_version: int | None,
    asset: str | None,
    criticality: str,
    explanation: str,
    code: str = "",
    execution: uuid.UUID | None = None,
    shadow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A proposal as the policy routed it; `code` when it was blocked, `execution` when it ran
    at once, `shadow` (shadow_judgement) when a policy in shadow judged it too."""
    data: dict[str, Any] = {
        "agent": agent,
        "action": action,
        "target": target,
        "target_canonical": target_canonical,
        "confidence": confidence,
        "status": status,
        "policy_version": policy_version,
        "asset": asset,
        "criticality": criticality,
        "explanation": explanation,
    }
    if code:
        data["code"] = code
    if execution is not None:
        data["execution"] = str(execution)
    if shadow is not None:
        data["shadow"] = shadow
    return data


def shadow_judgement(
    *, version: int | None, outcome: str, code: str = "", explanation: str = ""
) -> dict[str, Any] | None:
    """What the agent's policy in shadow would have done with a proposal (never done); None
    when no shadow judged it."""
    if version is None:
        return None
    data: dict[str, Any] = {"version": version, "outcome": outcome, "explanation": explanation}
    if code:
        data["code"] = code
    return data


def approval(
    *,
    reason: str,
    approvals: int,
    required_approvals: int,
    seconds_on_card: float | None,
    execution: uuid.UUID | None = None,
    undo_until: datetime | None = None,
) -> dict[str, Any]:
    """An analyst's approval: APPROVAL_RECORDED while more are needed, APPROVED (with the
    execution it queued, and the end of its undo window if there is one) at the last."""
    data: dict[str, Any] = {
        "verdict": "approve",
        "reason": reason,
        "approvals": approvals,
        "required_approvals": required_approvals,
        "seconds_on_card": seconds_on_card,
    }
    if execution is not None:
        data["execution"] = str(execution)
    if undo_until is not None:
        data["undo_until"] = undo_until
    return data


def rejection(*, reason: str, seconds_on_card: float | None) -> dict[str, Any]:
    return {"verdict": "reject", "reason": reason, "seconds_on_card": seconds_on_card}


def escalation(*, escalate_at: datetime | None, approvals: int) -> dict[str, Any]:
    return {"escalate_at": escalate_at, "approvals": approvals}


def expiry(*, expires_at: datetime | None, approvals: int) -> dict[str, Any]:
    return {"expires_at": expires_at, "approvals": approvals}
