"""Rebuild the reports' daily rollups: every day from the first proposal, or some days."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date

from audit.reports import rollup


class Command(BaseCommand):
    help = (
        "Rebuild the reports' daily rollups (audit.reports.rollup): with --rebuild every day "
        "from the first proposal to today, or the days from --since to --until."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="Every day, from the first.")
        parser.add_argument("--since", help="First day (YYYY-MM-DD, REPORT_TIME_ZONE).")
        parser.add_argument("--until", help="Last day (YYYY-MM-DD), today by default.")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = _day(options["since"], "--since"), _day(options["until"], "--until")
        if not options["rebuild"] and since is None:
            raise CommandError("Say which days: --rebuild for all of them, or --since DATE.")
        started = time.perf_counter()
        days = proposals = 0
        for day, counted in rollup.rollup_all(since, until):
            days += 1
            proposals += counted
            if options["verbosity"] > 1:
                self.stdout.write(f"{day}: {counted} proposals")
        self.stdout.write(
            f"rebuilt {days} days ({proposals} proposals) in {time.perf_counter() - started:.1f} s"
        )


def _day(raw: str | None, name: str) -> Any:
    if not raw:
        return None
    try:
        day = parse_date(raw)
    except ValueError:
        day = None  # well formed, but no such day (2026-13-01)
    if day is None:
        raise CommandError(f"{name} {raw!r} is not a date (YYYY-MM-DD).")
    return day
