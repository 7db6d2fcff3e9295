"""Report and audit-chain benchmark at scale (a script, not a test).

    python -m bench.reports [--decisions 1000000] [--writer history|bulk] [--drop]

Uses its own PostgreSQL database (BENCH_DATABASE_URL, default soc_bench_reports on the local
server), migrates it, generates synthetic history until it holds the requested number of
decisions (reused on the next run), then prints, in one run: the render time of each report
page as a manager sees it (default period and the whole history), from the reports' exact
statements and then from the daily rollups the workers keep, the raw SQL aggregation
time of the same core figures for comparison, and the time verify_audit takes over the chain.

Above a million decisions (or with --writer bulk) the history is a year of proposals,
decisions and executions drawn and written by the database server, without audit events
(bench.history_bulk); the reports' daily rollups are then built (two processes, a month
each at a time) and every report is timed twice over the same periods, from its exact
statements and from the rollups, with the figures of both side by side.
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
    parser.add_argument(
        "--writer",
        choices=("history", "bulk"),
        help="generate_history (with audit events; default up to 1,000,000 decisions) or a "
        "year written in bulk by the server (no audit events; default above)",
    )
    args = parser.parse_args()
    writer = args.writer or ("bulk" if args.decisions > 1_000_000 else "history")

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
        if writer == "bulk":
            _bulk_history(url, args.decisions - have)
        else:
            call_command("generate_history", decisions=args.decisions - have)
        print(f"generation took {time.perf_counter() - started:.1f} s", flush=True)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    if writer == "bulk":
        _compare(url)
        connection.close()
        if args.drop:
            drop_database(url)
            print("dropped the benchmark database")
        return
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
    from audit.reports import periods

    def render_all() -> None:
        for period, query in (("last 28 days (default span)", recent), ("whole history", whole)):
            for name in ("latency", "fatigue", "trust", "whatif"):
                cold, warm = timed(
                    lambda name=name, query=query: _page(client, f"/reports/?report={name}&{query}")
                )
                print(f"  {name:8} {period:30} {cold:6.3f} s / {warm:6.3f} s")

    print(
        "\nreport page render (first run / median of next 2), as a manager, from the exact "
        "statements (what a period with no whole day rolled up runs):"
    )
    with periods.exact():
        render_all()
    started = time.perf_counter()
    call_command("rollup_reports", "--rebuild", stdout=io.StringIO())
    print(
        f"\nthe same with the daily rollups built, as the workers keep them (rollup_reports "
        f"--rebuild took {time.perf_counter() - started:.1f} s):"
    )
    render_all()

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


def _bulk_history(url: str, decisions: int) -> None:
    from django.utils import timezone

    from agents.models import Grant
    from approvals import demo
    from approvals.demo.people import STYLES
    from bench import history_bulk

    agents: dict[int, list[str]] = {}
    for agent in demo.ensure_agents():
        grants = Grant.objects.filter(policy__agent=agent, level__gte=1)
        agents[agent.pk] = sorted(set(grants.values_list("action", flat=True)))
    analysts = [user.pk for user in demo.ensure_users() if user.username in STYLES]
    written = history_bulk.write(
        url,
        decisions=decisions,
        end=timezone.now() - timedelta(hours=1),
        days=365,
        agents=[(pk, actions) for pk, actions in agents.items() if actions],
        analysts=analysts,
    )
    print(f"wrote {written:,} proposals", flush=True)


def _rollup_month(days: list[object]) -> tuple[int, float]:
    from django.db import transaction

    from audit.reports import rollup

    started = time.perf_counter()
    counted = sum(rollup.rollup_day(day, month=False) for day in days)  # type: ignore[arg-type]
    with transaction.atomic():
        rollup.rollup_month(days[0].replace(day=1))  # type: ignore[attr-defined]
    return counted, time.perf_counter() - started


def _forget_connections() -> None:
    """No connection (nor pool) crosses a fork: each process opens its own."""
    from django.db import connections

    for conn in connections.all():
        conn.close()
        if hasattr(conn, "close_pool"):
            conn.close_pool()


def _build_rollups() -> None:
    """Every day's rollup, two processes each taking a whole month at a time (a month's
    rebuilds take turns on its lock)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from approvals.models import Proposal
    from audit.models import ReportRollupDay
    from audit.reports import rollup

    first, last = (
        Proposal.objects.order_by("created_at").values_list("created_at", flat=True).first(),
        Proposal.objects.order_by("-created_at").values_list("created_at", flat=True).first(),
    )
    day, until = rollup.local_day(first), rollup.local_day(last)
    months: dict[tuple[int, int], list[object]] = {}
    built = set(ReportRollupDay.objects.values_list("day", flat=True))
    while day <= until:
        if day not in built:
            months.setdefault((day.year, day.month), []).append(day)
        day += timedelta(days=1)
    if not months:
        print("rollups: every day already built")
        return
    print(f"building rollups of {sum(map(len, months.values()))} days ...", flush=True)
    _forget_connections()
    started = time.perf_counter()
    counted = 0
    with ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("fork"), initializer=_forget_connections
    ) as pool:
        for proposals, _seconds in pool.map(_rollup_month, months.values()):
            counted += proposals
    elapsed = time.perf_counter() - started
    print(
        f"rollups built: {counted:,} proposals in {elapsed:.1f} s "
        f"({elapsed / sum(map(len, months.values())):.2f} s per day, 2 processes)",
        flush=True,
    )


def _figures(name: str, report: object) -> str:
    """The figures to compare, in one line."""
    tables = {t.title: t for t in report.tables}  # type: ignore[attr-defined]
    if name == "latency":
        row = tables["Latency overall"].rows[0]
        sla = {r[0]: r[1] for r in tables["SLA and queue"].rows}
        return (
            f"decided {row[1]:,} p50 {row[2].csv} p90 {row[3].csv} p99 {row[4].csv} s; "
            f"breaches {sla['SLA breaches']:,}; peak {sla['peak queue depth']:,}"
        )
    if name == "trust":
        rows = tables["Trust by agent and action"].rows
        return (
            f"{len(rows)} rows, proposals {sum(r[3] for r in rows):,}, decided "
            f"{sum(r[4] for r in rows):,}, executed {sum(r[8] for r in rows):,}; "
            + "; ".join(f"{r[0]}/{r[1]}: {r[11][:28]}" for r in rows[:2])
        )
    if name == "whatif":
        row = tables[next(t for t in tables if t.startswith("What-if at"))].rows[0]
        return f"sent {row[1]:,} covered {row[2]:,} would run alone {row[3]:,} rejected {row[4]:,}"
    rows = [r for r in tables["Fatigue by analyst and shift"].rows if r[1] == "all"]
    return "; ".join(
        f"{r[0]} {r[2]:,} decisions {r[3]:,} shifts {r[4].csv}/h card {r[6].csv} s "
        f"first {r[8].csv} last {r[9].csv} s streak {r[10]}"
        for r in rows
    )


def _compare(url: str) -> None:
    from django.db import connection

    from approvals.models import Decision, Execution, Proposal
    from audit import reports
    from audit.models import ReportRollup, ShiftRollup
    from audit.reports import periods

    counts = {
        "proposals": Proposal.objects.count(),
        "decisions": Decision.objects.count(),
        "executions": Execution.objects.count(),
    }
    print("rows: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"database size: {cursor.fetchone()[0]}")
    _build_rollups()
    for label, model in (("rollup rows", ReportRollup), ("fatigue rollup rows", ShiftRollup)):
        table = model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*), pg_size_pretty(pg_total_relation_size('{table}')) FROM {table}"  # noqa: S608
            )
            rows, size = cursor.fetchone()
        print(f"{label}: {rows:,} ({size})")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    last = Proposal.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    first = Proposal.objects.order_by("created_at").values_list("created_at", flat=True).first()
    today = reports.Filters.default()
    spans = {
        "last 28 days": today,
        "whole year": reports.Filters(
            since=today.until - timedelta(days=((today.until - first).days + 1)),
            until=today.until,
        ),
    }
    print(f"history: {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC")
    print("\neach report: exact statements (one run) against rollups (first / median of next 2)")
    for label, f in spans.items():
        print(f"\n{label}: {reports.period_text(f)}")
        for name in ("latency", "trust", "whatif", "fatigue"):
            report = reports.REPORTS[name]
            with periods.exact():
                started = time.perf_counter()
                exact = report(f)
                exact_time = time.perf_counter() - started
            if not periods.usable(f, threshold=False):
                print(f"  {name:8} exact {exact_time:7.3f} s   (no rollup: the same statements)")
                print(f"    exact:   {_figures(name, exact)}")
                continue
            rolled_report: list[object] = []
            cold, warm = timed(lambda report=report, f=f, out=rolled_report: out.append(report(f)))
            print(f"  {name:8} exact {exact_time:7.3f} s   rollups {cold:6.3f} s / {warm:6.3f} s")
            print(f"    exact:   {_figures(name, exact)}")
            print(f"    rollups: {_figures(name, rolled_report[-1])}")
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")


def _page(client: object, path: str) -> None:
    response = client.get(path)  # type: ignore[attr-defined]
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}")


if __name__ == "__main__":
    main()
