"""Report and audit-chain benchmark at scale (a script, not a test).

    python -m bench.reports [--decisions 1000000] [--drop]

Uses its own PostgreSQL database (BENCH_DATABASE_URL, default soc_bench_reports on the local
server), migrates it, generates synthetic history until it holds the requested number of
decisions (reused on the next run), then prints, in one run: the render time of each report
page as a manager sees it (default period and the whole history), the raw SQL aggregation
time of the same core figures for comparison, and the time verify_audit takes over the chain.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/soc_bench_reports"


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    parts = urlparse(url)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


def timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(first run, median of the following runs) in seconds."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return runs[0], statistics.median(runs[1:] or runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--drop", action="store_true", help="Drop the database afterwards.")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soc_console.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from approvals import demo
    from approvals.models import Decision, Execution, Proposal
    from audit.models import AuditEvent

    call_command("migrate", verbosity=0)
    demo.ensure_users()
    have = Decision.objects.count()
    if have < args.decisions:
        print(f"generating {args.decisions - have} decisions (have {have}) ...", flush=True)
        started = time.perf_counter()
        call_command("generate_history", decisions=args.decisions - have)
        print(f"generation took {time.perf_counter() - started:.1f} s", flush=True)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    counts = {
        "proposals": Proposal.objects.count(),
        "decisions": Decision.objects.count(),
        "executions": Execution.objects.count(),
        "audit events": AuditEvent.objects.count(),
    }
    print("rows: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(created_at), max(created_at) FROM approvals_decision")
        first, last = cursor.fetchone()
    print(f"history: {first:%Y-%m-%d} to {last:%Y-%m-%d}")

    setup_test_environment()  # lets the test client accept the 'testserver' host
    client = Client()
    client.force_login(User.objects.get(username="manager"))
    whole = f"since={first:%Y-%m-%d}&until={last:%Y-%m-%d}"
    # The page's default period is the last 28 whole days, today included; the history may
    # end earlier.
    recent = f"since={last - timedelta(days=27):%Y-%m-%d}&until={last:%Y-%m-%d}"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM approvals_decision WHERE created_at >= %s",
            [last - timedelta(days=28)],
        )
        print(f"decisions in the last 28 days of history: {cursor.fetchone()[0]:,}")
    print("\nreport page render (first run / median of next 2), as a manager:")
    for period, query in (("last 28 days (default span)", recent), ("whole history", whole)):
        for name in ("latency", "fatigue", "trust", "whatif"):
            cold, warm = timed(
                lambda name=name, query=query: _page(client, f"/reports/?report={name}&{query}")
            )
            print(f"  {name:8} {period:30} {cold:6.3f} s / {warm:6.3f} s")

    print("\nraw SQL aggregation for comparison (core figures only, no page):")
    raw = {
        "latency p50/p90/p99 (final decision)": (
            "SELECT count(*), percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM decided_at - created_at)) FROM approvals_proposal "
            "WHERE status IN ('approved', 'rejected') AND created_at >= %s AND created_at < %s"
        ),
        "fatigue median time on card per analyst": (
            "SELECT analyst_id, count(*), percentile_cont(0.5) WITHIN GROUP "
            "(ORDER BY seconds_on_card) FROM approvals_decision "
            "WHERE created_at >= %s AND created_at < %s GROUP BY analyst_id"
        ),
    }
    for period, since in (("last 28 days", last - timedelta(days=28)), ("whole history", first)):
        for label, sql in raw.items():

            def run(sql: str = sql, since: object = since) -> None:
                with connection.cursor() as cursor:
                    cursor.execute(sql, [since, last + timedelta(seconds=1)])
                    cursor.fetchall()

            cold, warm = timed(run)
            print(f"  {label:42} {period:15} {cold:6.3f} s / {warm:6.3f} s")

    print("\nverify_audit over the whole chain (the management command):")
    out = io.StringIO()
    started = time.perf_counter()
    call_command("verify_audit", stdout=out)
    elapsed = time.perf_counter() - started
    events = AuditEvent.objects.count()
    print(f"  {out.getvalue().splitlines()[0]}")
    print(
        f"  {events:,} events in {elapsed:.2f} s: {elapsed / events * 1e6:.2f} µs per event, "
        f"{elapsed / events * 1e6:.1f} s per million events"
    )
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")
    connection.close()
    if args.drop:
        drop_database(url)
        print("dropped the benchmark database")


def _page(client: object, path: str) -> None:
    response = client.get(path)  # type: ignore[attr-defined]
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}")


if __name__ == "__main__":
    main()
