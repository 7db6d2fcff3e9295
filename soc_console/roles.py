"""Roles are Django groups. Every page and action checks them on the server."""

from __future__ import annotations

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
