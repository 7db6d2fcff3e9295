"""Roles are Django groups. Every page and action checks them on the server."""

from __future__ import annotations

import json
from typing import Any

ANALYST = "analyst"
SENIOR = "senior_analyst"
MANAGER = "manager"
ADMIN = "admin"
ALL = (ANALYST, SENIOR, MANAGER, ADMIN)


def names(user: Any) -> frozenset[str]:
    if user is None or not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_soc_roles", None)
    if cached is None:
        if not hasattr(user, "groups"):
            return frozenset()  # an agent principal has no console roles
        cached = frozenset(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached = cached | {ADMIN}
        user._soc_roles = cached
    return cached


def can_view_console(user: Any) -> bool:
    return bool(names(user) & set(ALL))


def can_decide(user: Any) -> bool:
    return bool(names(user) & {ANALYST, SENIOR, ADMIN})


def is_senior(user: Any) -> bool:
    return bool(names(user) & {SENIOR, ADMIN})


def can_stop(user: Any) -> bool:
    return bool(names(user) & {MANAGER, ADMIN})


def can_suspend_agent(user: Any) -> bool:
    # Suspending only stops an agent (and holds its queued work); the senior analyst who sees
    # one misbehave should not have to find a manager first. Resuming stays with can_stop.
    return bool(names(user) & {SENIOR, MANAGER, ADMIN})


def can_read_reports(user: Any) -> bool:
    return bool(names(user) & {MANAGER, ADMIN})


def can_change_autonomy(user: Any) -> bool:
    """Put a candidate policy in shadow, promote or discard it: a manager's call on the
    evidence, as the reports it reads are theirs."""
    return bool(names(user) & {MANAGER, ADMIN})


def can_manage_agents(user: Any) -> bool:
    return bool(names(user) & {ADMIN})


def label(user: Any) -> str:
    roles = names(user)
    for role, text in (
        (ADMIN, "admin"),
        (MANAGER, "manager"),
        (SENIOR, "senior analyst"),
        (ANALYST, "analyst"),
    ):
        if role in roles:
            return text
    return "no role"


# Single sign-on: the identity provider's groups, as a claim, give the console's roles.
RoleMap = dict[str, frozenset[str]]


def parse_role_map(raw: str) -> RoleMap:
    """OIDC_ROLE_MAP: which of the provider's groups give which console role.

    Either `group=role,group=role` (a group may appear more than once to give several roles;
    the last `=` of an item separates them), or, for group names holding commas or `=` (LDAP
    distinguished names), a JSON object `{"group": "role"}` or `{"group": ["role", ...]}`.
    ValueError names what is wrong.
    """
    text = raw.strip()
    pairs: list[tuple[str, str]] = []
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg})") from exc
        for group, value in loaded.items():
            targets = [value] if isinstance(value, str) else value
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise ValueError(f"{group!r} must map to a role or a list of roles")
            pairs.extend((group, role) for role in targets)
    else:
        for item in text.split(","):
            if not item.strip():
                continue
            group, sep, role = item.strip().rpartition("=")
            if not sep or not group.strip():
                raise ValueError(f"{item.strip()!r} is not group=role")
            pairs.append((group.strip(), role.strip()))
    mapping: dict[str, set[str]] = {}
    for group, role in pairs:
        if role not in ALL:
            raise ValueError(
                f"{role!r} (for {group!r}) is not a role: the roles are {', '.join(ALL)}"
            )
        if not group:
            raise ValueError("a group name is empty")
        mapping.setdefault(group, set()).add(role)
    if not mapping:
        raise ValueError("it maps no group to a role")
    return {group: frozenset(given) for group, given in mapping.items()}


def claim_groups(value: Any) -> list[str]:
    """The groups a claim names: a list of strings, or one string. Anything else names none:
    a claim the provider sends in a shape we do not expect must not give a role."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def from_claim(value: Any, mapping: RoleMap) -> frozenset[str]:
    """The console roles a role claim gives: exactly those its mapped groups name."""
    given: set[str] = set()
    for group in claim_groups(value):
        given |= mapping.get(group, frozenset())
    return frozenset(given)
