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


# Attention checks: synthetic proposals the console puts in the queue. Every event of one
# carries "synthetic": true.
CHECK_INSERTED = "attention_check.inserted"
CHECK_MISSED = "attention_check.missed"


def check_inserted(
    submission: dict[str, Any],
    *,
    team: str | None,
    shown_agent: str,
    flaw: str,
    what_is_wrong: str,
    modelled_on: uuid.UUID | None,
) -> dict[str, Any]:
    """A check put in the queue: its card as `submitted` built it, and what is wrong with it."""
    return {
        **submission,
        "synthetic": True,
        "team": team,
        "shown_agent": shown_agent,
        "flaw": flaw,
        "what_is_wrong": what_is_wrong,
        "modelled_on": str(modelled_on) if modelled_on else None,
    }


def check_missed(
    *, reason: str, seconds_on_card: float | None, flaw: str | None, what_is_wrong: str
) -> dict[str, Any]:
    """An analyst approved a check: nothing ran, and the console withdrew it."""
    return {
        "verdict": "approve",
        "reason": reason,
        "seconds_on_card": seconds_on_card,
        "synthetic": True,
        "attention_check": {"outcome": "missed", "flaw": flaw, "what_is_wrong": what_is_wrong},
    }


def check_caught(*, reason: str, seconds_on_card: float | None, flaw: str | None) -> dict:
    """An analyst rejected a check: its rejection, marked."""
    return {
        **rejection(reason=reason, seconds_on_card=seconds_on_card),
        "synthetic": True,
        "attention_check": {"outcome": "caught", "flaw": flaw},
    }
