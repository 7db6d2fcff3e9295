from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError
from django.utils.text import slugify

from agents import grants
from agents.services import PolicyError, agent_register, agent_set_callback


def parse_grant(raw: str) -> tuple[str, int]:
    try:
        return grants.parse_grant(raw)
    except grants.GrantError as exc:
        raise CommandError(f"--grant {exc}") from exc


def parse_budget(raw: str) -> tuple[str, tuple[int, int]]:
    try:
        return grants.parse_budget(raw)
    except grants.GrantError as exc:
        raise CommandError(f"--budget {exc}") from exc


def threshold(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise CommandError(f"threshold {raw!r} is not a number") from exc
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"threshold {raw!r} must lie between 0 and 1")
    return value


class Command(BaseCommand):
    help = "Register an agent with a policy and print its new API key once, alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the agent's name: lower case, digits and dashes")
        parser.add_argument(
            "--grant",
            action="append",
            default=[],
            metavar="ACTION=LEVEL",
            help=f"allow an action at an autonomy level (repeat for more actions): "
            f"{grants.levels_help()}. Level 1 is recorded, never run; 2 runs after an analyst "
            "approves; 3 runs at once when reversible, confident and not on a critical asset; "
            "4 the same for irreversible actions too; 3 and 4 fall back to 2 otherwise. Actions "
            "not granted are refused",
        )
        parser.add_argument(
            "--auto-threshold",
            default="0.90",
            help="confidence at or above which levels 3 and 4 run without a human (default 0.90)",
        )
        parser.add_argument(
            "--review-threshold",
            default="0.50",
            help="confidence below which a proposal is only flagged for tuning (default 0.50)",
        )
        parser.add_argument(
            "--max-pending",
            type=int,
            default=50,
            help="circuit breaker: open proposals at most; the next one suspends the agent "
            "(default 50)",
        )
        parser.add_argument(
            "--max-per-minute",
            type=int,
            default=30,
            help="circuit breaker: proposals per minute at most; the next one suspends the "
            "agent (default 30)",
        )
        parser.add_argument(
            "--budget",
            action="append",
            default=[],
            metavar="ACTION=RUNS/TARGETS",
            help="blast-radius budget of a granted action: at most RUNS automatic executions "
            "per hour on at most TARGETS distinct targets, then a human decides "
            "(default 20/10)",
        )
        parser.add_argument("--description", default="", help="what the agent does")
        parser.add_argument(
            "--callback-url",
            default="",
            help="receives a signed POST when a proposal is decided and when its action ends",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["slug"]
        if slugify(slug) != slug:
            raise CommandError(f"{slug!r} is not a slug: use lowercase letters, digits and -")
        grants = dict(parse_grant(raw) for raw in options["grant"])
        budgets = dict(parse_budget(raw) for raw in options["budget"])
        try:
            agent, issued = agent_register(
                slug=slug,
                by="create_agent",
                description=options["description"],
                grants=grants,
                budgets=budgets,
                max_pending=options["max_pending"],
                max_proposals_per_minute=options["max_per_minute"],
                auto_threshold=threshold(options["auto_threshold"]),
                review_threshold=threshold(options["review_threshold"]),
            )
        except IntegrityError as exc:
            raise CommandError(f"an agent named {slug!r} already exists") from exc
        except PolicyError as exc:
            raise CommandError(str(exc)) from exc
        if options["callback_url"]:
            secret = agent_set_callback(agent=agent, url=options["callback_url"], by="create_agent")
            self.stdout.write(f"callback secret (HMAC-SHA256 key, shown once): {secret}")
        summary = ", ".join(f"{a}={lvl}" for a, lvl in sorted(grants.items())) or "none"
        self.stdout.write(f"agent {slug} registered; policy v1 grants: {summary}")
        self.stdout.write("API key (shown once, store it now):")
        self.stdout.write(issued.raw)
