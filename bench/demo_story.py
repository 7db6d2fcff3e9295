"""Does the demo tell its story whenever it is seeded? (a script, not a test)

    python -m bench.demo_story [--weeks 4] [--seed 7] [--hours 168] [--shadow-only]

The demo's history ends on the hour (approvals.demo.history.demo_end), so what is drawn depends
on the hour of the week it ends at and on nothing finer: there are 168 histories, up to a shift
by whole weeks. For each of them this seeds the demo as `seed_demo` does, with the clock set to
the first moment that gives that history (and, where the reports' day changes within the hour
that gives it, to the first moment of the new day as well, since the reports' default period
follows the date), in a transaction it rolls back, and checks what the demo promises:

- the fatigue report names the rubber-stamper and the senior who speeds up at night;
- the trust report finds triage-bot ready for level 3 on isolate_host, and edr-responder not
  ready for more, and takes nothing away;
- triage-bot's candidate policy in shadow has a sample big enough to promote on, has judged
  isolate_host, and has three worst cases to show.

The reports' days are those of REPORT_TIME_ZONE (UTC unless set); a zone with summer time is
checked only at the offsets of the week scanned. It prints each failure and, at the end, the
count of failures and the smallest margins. Uses
its own PostgreSQL database (soc_bench_demo on the server of DATABASE_URL), and leaves in it
only the demo's users, agents and assets.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from audit.reports import Filters

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORST = 3  # worst cases the shadow page shows


@dataclass
class Told:
    """What one seeded demo showed, and what of its promise it broke."""

    problems: list[str] = field(default_factory=list)
    margins: dict[str, float] = field(default_factory=dict)


def story_told(*, period: Filters | None = None, reports: bool = True, shadow: bool = True) -> Told:
    """Check the demo seeded in the current database against its story: the reports over
    `period` (by default theirs, at the current time) and the policy in shadow."""
    from audit import reports as report_pages

    told = Told()
    if reports:
        _check_reports(told, period or report_pages.Filters.default())
    if shadow:
        _check_shadow(told)
    return told


def _check_reports(told: Told, period: Filters) -> None:
    from audit import reports as report_pages
    from audit.reports.fatigue import fatigue_rows

    fatigue = report_pages.fatigue(period).finding
    trust = report_pages.trust(period).finding
    for pattern, finding in (
        # The rubber-stamper is named, at 90 % or more.
        (r"analyst approved (9\d|100)% ", fatigue),
        (r"senior's time on card falls", fatigue),
        (r"triage-bot is ready for level 3 on isolate_host", trust),
        # edr-responder is over-confident, but none of its grants lets it act alone: the
        # report says it is not ready for more, and takes away nothing it does not have.
        (r"edr-responder is not ready for more autonomy on isolate_host", trust),
    ):
        if not re.search(pattern, finding):
            told.problems.append(f"no {pattern!r} in {finding!r}")
    if "should lose its autonomy" in trust:
        told.problems.append(f"the trust report takes autonomy away: {trust!r}")
    for row in fatigue_rows(period):
        if row.analyst == "senior" and row.shift == "all" and row.last_median:
            # The report says the time falls when the last hour's is under 0.6 of the first's.
            told.margins["senior's first hour on card over the last (flagged above 1.67)"] = (
                row.first_median or 0
            ) / row.last_median


def _check_shadow(told: Told) -> None:
    from agents.models import Agent
    from approvals import demo
    from approvals.selectors.shadow import EXTRA_LOAD, HARM_AVOIDED, WOULD_BLOCK, shadow_score

    shadow = Agent.objects.get(slug=demo.SHADOW_AGENT).shadow_policy
    if shadow is None:
        told.problems.append("no policy in shadow")
        return
    score = shadow_score(shadow, worst=WORST)
    isolate = score.by_action.get("isolate_host")
    told.margins.update(
        {
            "shadow sample over the minimum": score.overall.settled - score.min_sample,
            "isolate_host judged runs": isolate.would_run_decided if isolate else 0,
            "worst cases to choose from": sum(
                score.overall.counts[c] for c in (HARM_AVOIDED, WOULD_BLOCK, EXTRA_LOAD)
            ),
        }
    )
    if not score.ready:
        told.problems.append(f"shadow sample {score.overall.settled} < {score.min_sample}")
    if isolate is None or isolate.would_run_decided <= 10 or isolate.agreement.count == 0:
        told.problems.append("the shadow has too little isolate_host to be judged on")
    if len(score.worst) != WORST:
        told.problems.append(f"{len(score.worst)} worst cases, not {WORST}")
    if score.overall.net_minutes is None:
        told.problems.append("no estimate of the analysts' minutes")


def moments(first_end: datetime, hours: int, zone: ZoneInfo) -> list[datetime]:
    """The clock times to seed at: for each history end, the first moment that gives it, and
    the first moment of a new report day if one starts while it is still the history seeded."""
    out = []
    for i in range(hours):
        end = first_end + timedelta(hours=i)
        start, stop = end + timedelta(minutes=30), end + timedelta(minutes=90)
        out.append(start)
        local = start.astimezone(zone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
        if midnight < stop:
            out.append(midnight.astimezone(UTC))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weeks", type=int, default=4, help="as seed_demo --weeks")
    parser.add_argument("--seed", type=int, default=7, help="as seed_demo --seed")
    parser.add_argument("--hours", type=int, default=168, help="history ends to try, an hour apart")
    parser.add_argument(
        "--shadow-only", action="store_true", help="check the policy in shadow, not the reports"
    )
    parser.add_argument("--database", default="soc_bench_demo", help="kept between runs")
    args = parser.parse_args()

    from bench.common import scratch_database

    os.environ["DATABASE_URL"] = scratch_database(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soc_console.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from approvals import demo
    from approvals.demo.history import demo_end
    from audit.reports.base import report_zone

    call_command("migrate", verbosity=0)
    # What seed_demo would create the first time, committed once.
    demo.ensure_users()
    demo.ensure_agents()
    demo.ensure_assets()
    demo.ensure_team()

    zone = ZoneInfo(report_zone())
    # A Monday 00:00 UTC: the hours that follow are the week's, whatever the date.
    first_end = demo_end(datetime(2026, 11, 30, 0, 30, tzinfo=UTC))
    failed = 0
    lowest: dict[str, float] = {}
    started = time.perf_counter()
    points = moments(first_end, args.hours, zone)
    for now in points:
        with mock.patch("django.utils.timezone.now", return_value=now), transaction.atomic():
            call_command(
                "seed_demo", weeks=args.weeks, pending=0, seed=args.seed, stdout=io.StringIO()
            )
            told = story_told(reports=not args.shadow_only)
            transaction.set_rollback(True)
        for name, value in told.margins.items():
            lowest[name] = min(lowest.get(name, value), value)
        if told.problems:
            failed += 1
            print(f"seeded {now:%a %H:%M} UTC: " + "; ".join(told.problems), flush=True)
    print(
        f"{len(points)} seedings ({args.weeks} weeks, seed {args.seed}, history ends an hour "
        f"apart over {args.hours} h) in {time.perf_counter() - started:.0f} s: {failed} did not "
        "tell the story"
    )
    print("smallest margins: " + ", ".join(f"{k} {v:.3g}" for k, v in lowest.items()))


if __name__ == "__main__":
    main()
