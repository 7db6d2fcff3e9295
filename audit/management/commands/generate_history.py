from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from approvals import demo
from approvals.demo.history import generate


class Command(BaseCommand):
    help = "Generate synthetic decision history of a given size (for report benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--decisions", type=int, required=True, help="Decisions to create.")
        parser.add_argument(
            "--per-hour", type=float, default=120.0, help="Proposals per hour of history."
        )
        parser.add_argument("--seed", type=int, default=11)
        parser.add_argument(
            "--full-events",
            action="store_true",
            help="Also log execution.started and rollback completion (more audit events).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        demo.ensure_users()
        demo.ensure_agents()
        demo.ensure_assets()
        started = time.monotonic()

        def progress(proposals: int, decisions: int) -> None:
            if proposals % 100000 < 5000:
                self.stdout.write(
                    f"  {proposals} proposals, {decisions} decisions "
                    f"({time.monotonic() - started:.0f} s)"
                )

        proposals, decisions, events = generate(
            rng=random.Random(options["seed"]),
            end=timezone.now() - timedelta(minutes=5),
            decisions=options["decisions"],
            per_hour=options["per_hour"],
            compact_events=not options["full_events"],
            progress=progress,
        )
        self.stdout.write(
            f"generated {proposals} proposals, {decisions} decisions, {events} audit events "
            f"in {time.monotonic() - started:.1f} s"
        )
