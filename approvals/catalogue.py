"""The action catalogue: every action an agent may propose, and how to check its target."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)
PRINCIPAL_RE = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,190}\.[A-Za-z]{2,63}$")
SAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}\\[A-Za-z0-9._\-]{1,64}$")
MESSAGE_ID_RE = re.compile(r"^<[^<>\s@]{1,200}@[^<>\s@]{1,200}>$")
TICKET_RE = re.compile(r"^[A-Z][A-Z0-9]{1,15}-[0-9]{1,10}$")  # ASCII digits: \d is any script
ALERT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")

RISK_WEIGHT = {"low": 1.0, "medium": 2.0, "high": 3.0, "critical": 4.0}
CRITICALITY_WEIGHT = {"low": 1.0, "medium": 2.0, "high": 3.0, "critical": 4.0}


class TargetError(ValueError):
    pass


def ip_or_network(value: str) -> str:
    if "%" in value:
        # A zone id (fe80::1%eth0) names an interface of the sender, not a host to contain.
        raise TargetError("must be an IPv4 or IPv6 address or CIDR network, without a zone id")
    try:
        if "/" in value:
            network = ipaddress.ip_network(value, strict=False)
            # A /32 (or /128) is one address: spell it as one, so the inventory matches it.
            if network.num_addresses == 1:
                return str(network.network_address)
            return str(network)
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise TargetError("must be an IPv4 or IPv6 address or CIDR network") from exc


def hostname(value: str) -> str:
    if not HOSTNAME_RE.match(value) or value.replace(".", "").isdigit():
        raise TargetError("must be a hostname such as ws-0142.corp.example")
    return value.lower().rstrip(".")


def principal(value: str) -> str:
    if PRINCIPAL_RE.match(value):
        return value.lower()
    if SAM_RE.match(value):
        return value
    raise TargetError("must be a user principal such as jdoe@corp.example or CORP\\jdoe")


def mailbox_or_message(value: str) -> str:
    if PRINCIPAL_RE.match(value):
        return value.lower()
    if MESSAGE_ID_RE.match(value):
        return value
    raise TargetError("must be a mailbox address or a message id such as <abc123@mail.example>")


def ticket_or_alert(value: str) -> str:
    if TICKET_RE.match(value) or ALERT_RE.match(value):
        return value
    raise TargetError("must be a ticket or alert id such as SOC-1234")


TARGET_KINDS: dict[str, tuple[str, Callable[[str], str]]] = {
    # target kind -> (asset inventory kind, validator)
    "ip": ("ip", ip_or_network),
    "host": ("host", hostname),
    "user": ("user", principal),
    "mailbox": ("mailbox", mailbox_or_message),
    "ticket": ("", ticket_or_alert),
}


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

    def clean_target(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise TargetError("must be a non-empty string")
        if len(raw) > 255:
            raise TargetError("must be at most 255 characters")
        return TARGET_KINDS[self.target_kind][1](raw.strip())

    @property
    def asset_kind(self) -> str:
        return TARGET_KINDS[self.target_kind][0]

    def clean_params(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise TargetError("must be an object")
        errors = []
        cleaned: dict[str, Any] = {}
        for key, value in raw.items():
            spec = self.params.get(key)
            if spec is None:
                allowed = ", ".join(sorted(self.params)) or "none"
                errors.append(f"unknown parameter {key!r} for {self.name} (allowed: {allowed})")
                continue
            if spec.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                errors.append(f"{key} must be an integer")
                continue
            if spec.kind is str and (not isinstance(value, str) or len(value) > spec.max_length):
                errors.append(f"{key} must be a string of at most {spec.max_length} characters")
                continue
            if spec.kind is str and "\x00" in value:
                errors.append(f"{key} must not contain NUL characters")
                continue
            if spec.minimum is not None and value < spec.minimum:
                errors.append(f"{key} must be at least {spec.minimum}")
                continue
            if spec.maximum is not None and value > spec.maximum:
                errors.append(f"{key} must be at most {spec.maximum}")
                continue
            cleaned[key] = value
        if errors:
            raise TargetError("; ".join(errors))
        return cleaned


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
            {"pid": Param(int, 1, 2**31), "process_name": Param(str, max_length=120)},
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
