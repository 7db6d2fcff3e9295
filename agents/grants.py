"""Grants written as text, ACTION=LEVEL: one parser for the admin form and `create_agent`.

Both check the same things: the action is in the catalogue and the level is one of `Level`.
"""

from __future__ import annotations

from . import catalogue
from .models import Level

EXAMPLE = "block_ip=2"


class GrantError(ValueError):
    """A grant that cannot be read; the message says what to write instead."""


def levels_help() -> str:
    """'0 manual only, 1 advisory, …' for help texts."""
    return ", ".join(f"{level.value} {level.label}" for level in Level)


def parse_grant(text: str) -> tuple[str, int]:
    action, sep, level = (part.strip() for part in text.partition("="))
    if not sep or not action:
        raise GrantError(f"{text!r}: write ACTION=LEVEL, for example {EXAMPLE}")
    if action not in catalogue.ACTIONS:
        raise GrantError(
            f"{text!r}: unknown action {action!r}; known: {', '.join(catalogue.ACTIONS)}"
        )
    if not level.isdigit() or int(level) not in Level.values:
        raise GrantError(f"{text!r}: the level must be one of {levels_help()}")
    return action, int(level)


def parse_grants(text: str) -> dict[str, int]:
    """Grants separated by commas or lines; a later grant of the same action wins."""
    parts = (part for part in text.replace("\n", ",").split(","))
    return dict(parse_grant(part) for part in parts if part.strip())


BUDGET_EXAMPLE = "isolate_host=20/10"


def parse_budget(text: str) -> tuple[str, tuple[int, int]]:
    """ACTION=RUNS/TARGETS: at most RUNS automatic executions of the action per hour, on at most
    TARGETS distinct targets."""
    action, sep, value = (part.strip() for part in text.partition("="))
    runs, slash, targets = (part.strip() for part in value.partition("/"))
    if not sep or not action or not slash:
        raise GrantError(f"{text!r}: write ACTION=RUNS/TARGETS, for example {BUDGET_EXAMPLE}")
    if action not in catalogue.ACTIONS:
        raise GrantError(
            f"{text!r}: unknown action {action!r}; known: {', '.join(catalogue.ACTIONS)}"
        )
    if not runs.isdigit() or not targets.isdigit():
        raise GrantError(f"{text!r}: RUNS and TARGETS are whole numbers, 0 or more")
    return action, (int(runs), int(targets))


def parse_budgets(text: str) -> dict[str, tuple[int, int]]:
    """Budgets separated by commas or lines; a later budget of the same action wins."""
    parts = (part for part in text.replace("\n", ",").split(","))
    return dict(parse_budget(part) for part in parts if part.strip())
