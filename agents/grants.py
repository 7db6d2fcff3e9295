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


def _check_action(text: str, action: str) -> None:
    """Refuse a line whose action the catalogue does not know."""
    if action not in catalogue.ACTIONS:
        raise GrantError(
            f"{text!r}: unknown action {action!r}; known: {', '.join(catalogue.ACTIONS)}"
        )


def _separated(text: str) -> list[str]:
    """The items of a text separated by commas or lines, blank ones left out."""
    return [part for part in text.replace("\n", ",").split(",") if part.strip()]


def parse_grant(text: str) -> tuple[str, int]:
    action, sep, level = (part.strip() for part in text.partition("="))
    if not sep or not action:
        raise GrantError(f"{text!r}: write ACTION=LEVEL, for example {EXAMPLE}")
    _check_action(text, action)
    if not level.isdigit() or int(level) not in Level.values:
        raise GrantError(f"{text!r}: the level must be one of {levels_help()}")
    return action, int(level)


def parse_grants(text: str) -> dict[str, int]:
    """Grants separated by commas or lines; a later grant of the same action wins."""
    return dict(parse_grant(part) for part in _separated(text))


BUDGET_EXAMPLE = "isolate_host=20/10"


def parse_budget(text: str) -> tuple[str, tuple[int, int]]:
    """ACTION=RUNS/TARGETS: at most RUNS automatic executions of the action per hour, on at most
    TARGETS distinct targets."""
    action, sep, value = (part.strip() for part in text.partition("="))
    runs, slash, targets = (part.strip() for part in value.partition("/"))
    if not sep or not action or not slash:
        raise GrantError(f"{text!r}: write ACTION=RUNS/TARGETS, for example {BUDGET_EXAMPLE}")
    _check_action(text, action)
    if not runs.isdigit() or not targets.isdigit():
        raise GrantError(f"{text!r}: RUNS and TARGETS are whole numbers, 0 or more")
    return action, (int(runs), int(targets))


def parse_budgets(text: str) -> dict[str, tuple[int, int]]:
    """Budgets separated by commas or lines; a later budget of the same action wins."""
    return dict(parse_budget(part) for part in _separated(text))


DEMOTION_EXAMPLE = "block_ip: to=2 last=20 above=25 over_confidence=on automatic_rollback=on"

# Each key of a demotion line, the DemotionRules field it sets and how its value is read.
_SWITCHES = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


def _level(text: str) -> int:
    if not text.isdigit() or int(text) not in Level.values:
        raise ValueError(f"a level, one of {levels_help()}")
    return int(text)


def _whole(text: str) -> int:
    if not text.isdigit():
        raise ValueError("a whole number, 0 or more")
    return int(text)


def _percent(text: str) -> int:
    text = text.removesuffix("%")
    if not text.isdigit() or int(text) > 100:
        raise ValueError("a whole percentage from 0 to 100")
    return int(text)


def _switch(text: str) -> bool:
    if text.lower() not in _SWITCHES:
        raise ValueError("on or off")
    return _SWITCHES[text.lower()]


_DEMOTION_KEYS = {
    "to": ("to_level", _level),
    "last": ("failure_window", _whole),
    "above": ("failure_percent", _percent),
    "over_confidence": ("over_confidence", _switch),
    "automatic_rollback": ("automatic_rollback", _switch),
}


def parse_demotion(text: str) -> tuple[str, dict[str, int | bool]]:
    """ACTION: key=value …, the rules a grant demotes by; keys left out carry over.

    `to` the level it drops to, `last` K and `above` X of "more than X % of the last K
    executions failed or were rolled back" (last=0 turns that rule off), `over_confidence` and
    `automatic_rollback` on or off.
    """
    action, sep, rest = (part.strip() for part in text.partition(":"))
    if not sep or not action:
        raise GrantError(f"{text!r}: write ACTION: key=value …, for example {DEMOTION_EXAMPLE}")
    _check_action(text, action)
    rules: dict[str, int | bool] = {}
    for item in rest.split():
        key, eq, value = item.partition("=")
        if key not in _DEMOTION_KEYS or not eq:
            raise GrantError(
                f"{text!r}: {item!r} is not one of {', '.join(k + '=…' for k in _DEMOTION_KEYS)}"
            )
        field, read = _DEMOTION_KEYS[key]
        try:
            rules[field] = read(value)
        except ValueError as exc:
            raise GrantError(f"{text!r}: {key} must be {exc}") from exc
    return action, rules


def parse_demotions(text: str) -> dict[str, dict[str, int | bool]]:
    """Demotion rules one action per line; a later line of the same action adds to it."""
    parsed: dict[str, dict[str, int | bool]] = {}
    for line in text.splitlines():
        if line.strip():
            action, rules = parse_demotion(line)
            parsed.setdefault(action, {}).update(rules)
    return parsed


def format_demotion(action: str, rules: dict[str, int | bool]) -> str:
    """The line parse_demotion reads back, every key written out."""
    names = {field: key for key, (field, _) in _DEMOTION_KEYS.items()}
    words = []
    for field, value in rules.items():
        shown = ("on" if value else "off") if isinstance(value, bool) else str(value)
        words.append(f"{names[field]}={shown}")
    return f"{action}: {' '.join(words)}"
