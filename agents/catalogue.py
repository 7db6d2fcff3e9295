"""The action catalogue: every action an agent may propose, and how to check its target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents import ladder, targets
from agents.targets import TargetError
from soc_console.contract import json_kind

# The kinds of target an action takes (agents.targets reads each).
TARGET_KINDS = targets.KINDS

# An action's risk and a target's criticality weigh in a card's priority on the same ladder.
RISK_WEIGHT = CRITICALITY_WEIGHT = {step: ladder.weight(step) for step in ladder.LADDER}


class ParamsError(TargetError):
    """A proposal's parameters are wrong: what is wrong with each, by its field's path."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class Param:
    kind: type
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 200


@dataclass(frozen=True)
class ActionType:
    name: str
    label: str
    connector: str
    target_kind: str
    risk: str
    reversible: bool
    undo: str  # what a rollback does, in words; "" when irreversible
    effect: str  # one line for the card; {target} is filled in
    params: dict[str, Param] = field(default_factory=dict)

    def describe(self, target: str) -> str:
        return self.effect.format(target=target)

    def clean_target(self, raw: Any) -> targets.Identity:
        """The target's one identity (agents.targets); TargetError says what is wrong.

        A target as an agent sends it, read exactly as the schema's pattern reads it: white
        space around it is refused rather than trimmed (the inventory's names are trimmed)."""
        if isinstance(raw, str) and raw.strip() and raw != raw.strip():
            raise TargetError("must not begin or end with white space")
        return targets.canonical(self.target_kind, raw)

    def clean_params(self, raw: Any) -> dict[str, Any]:
        """The parameters, checked; ParamsError names each wrong one (`params.title`)."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise ParamsError({"params": f"must be an object, not {json_kind(raw)}"})
        errors: dict[str, str] = {}
        cleaned: dict[str, Any] = {}
        for key, value in raw.items():
            problem = self._param_problem(key, value)
            if problem:
                errors[f"params.{key}"] = problem
            else:
                cleaned[key] = value
        if errors:
            raise ParamsError(errors)
        return cleaned

    def _param_problem(self, key: str, value: Any) -> str:
        """What is wrong with one parameter, or ""."""
        spec = self.params.get(key)
        if spec is None:
            allowed = ", ".join(sorted(self.params)) or "none"
            return f"unknown parameter {key!r} for {self.name} (allowed: {allowed})"
        if spec.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{key} must be an integer, not {json_kind(value)}"
        if spec.kind is str and not isinstance(value, str):
            return (
                f"{key} must be a string of at most {spec.max_length} characters, "
                f"not {json_kind(value)}"
            )
        if spec.kind is str and len(value) > spec.max_length:
            return f"{key} must be a string of at most {spec.max_length} characters"
        if spec.kind is str and "\x00" in value:
            return f"{key} must not contain NUL characters"
        if spec.minimum is not None and value < spec.minimum:
            return f"{key} must be at least {spec.minimum}"
        if spec.maximum is not None and value > spec.maximum:
            return f"{key} must be at most {spec.maximum}"
        return ""


ACTIONS: dict[str, ActionType] = {
    a.name: a
    for a in [
        ActionType(
            "enrich_alert",
            "Enrich alert",
            "threat_intel",
            "ticket",
            "low",
            False,
            "",
            "Look up {target} in threat intelligence and attach the findings.",
        ),
        ActionType(
            "close_duplicate",
            "Close duplicate",
            "ticketing",
            "ticket",
            "low",
            True,
            "reopen",
            "Close ticket {target} as a duplicate.",
            {"duplicate_of": Param(str, max_length=40)},
        ),
        ActionType(
            "create_ticket",
            "Create ticket",
            "ticketing",
            "ticket",
            "low",
            True,
            "close",
            "Open an incident ticket for alert {target}.",
            {"title": Param(str, max_length=200), "queue": Param(str, max_length=40)},
        ),
        ActionType(
            "block_ip",
            "Block IP",
            "firewall",
            "ip",
            "medium",
            True,
            "unblock",
            "Block all traffic to and from {target} at the perimeter firewall.",
            {"duration_minutes": Param(int, 1, 43200)},
        ),
        ActionType(
            "quarantine_email",
            "Quarantine email",
            "mail_gateway",
            "mailbox",
            "medium",
            True,
            "release",
            "Move {target} to quarantine so no one can open it.",
        ),
        ActionType(
            "kill_process",
            "Kill process",
            "edr",
            "host",
            "medium",
            False,
            "",
            "Terminate a running process on {target}.",
            {"pid": Param(int, 1, 2**31 - 1), "process_name": Param(str, max_length=120)},
        ),
        ActionType(
            "isolate_host",
            "Isolate host",
            "edr",
            "host",
            "high",
            True,
            "release",
            "Cut {target} off the network except for the EDR channel.",
        ),
        ActionType(
            "disable_user",
            "Disable user",
            "identity",
            "user",
            "high",
            True,
            "enable",
            "Disable the account {target}: no new sign-ins.",
        ),
        ActionType(
            "reset_password",
            "Reset password",
            "identity",
            "user",
            "high",
            False,
            "",
            "Force a password reset for {target}; the current password stops working.",
        ),
        ActionType(
            "revoke_sessions",
            "Revoke sessions",
            "identity",
            "user",
            "high",
            False,
            "",
            "Sign {target} out of every active session and revoke refresh tokens.",
        ),
        ActionType(
            "update_firewall_policy",
            "Update firewall policy",
            "firewall",
            "ip",
            "critical",
            True,
            "restore previous",
            "Replace the firewall rule set for {target}.",
            {"rule": Param(str, max_length=500)},
        ),
    ]
}

CONNECTORS = sorted({a.connector for a in ACTIONS.values()})


def get(name: str) -> ActionType | None:
    return ACTIONS.get(name)
