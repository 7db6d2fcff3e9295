"""/metrics scrape time with a full queue.

    python -m bench.metrics [--pending 5000] [--weeks 2]

Builds a scratch PostgreSQL database on the server of DATABASE_URL (seed_demo: its history plus
--pending pending proposals), starts the server as the Procfile runs it, and scrapes /metrics
over HTTP from loopback: the first scrape folds the whole audit log into the shared totals;
the next ones fold only what is new (nothing, here) and read the gauges. Redis keys live under
their own prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import httpx
import redis

from bench.common import drop_database, free_port, machine, manage, scratch_database, start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=5000)
    parser.add_argument("--weeks", type=int, default=2, help="seed_demo's history")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    name = f"bench_metrics_{uuid.uuid4().hex[:8]}"
    prefix = f"bench-metrics-{uuid.uuid4().hex[:8]}"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "soc_console.settings",
        "DATABASE_URL": scratch_database(name),
        "CHANNEL_PREFIX": prefix,
        "CELERY_QUEUE": prefix,
        "LOG_LEVEL": "WARNING",
    }
    server = None
    try:
        manage(env, "migrate", "--noinput")
        started = time.monotonic()
        manage(env, "seed_demo", "--weeks", str(args.weeks), "--pending", str(args.pending))
        print(f"seed_demo --pending {args.pending}: {time.monotonic() - started:.1f} s")
        port = free_port()
        server = start_server(env, port, workers=2)
        url = f"http://127.0.0.1:{port}/metrics"
        with httpx.Client(timeout=60) as client:
            began = time.perf_counter()
            first = client.get(url)
            cold = time.perf_counter() - began
            first.raise_for_status()
            folded = next(
                line.split()[-1]
                for line in first.text.splitlines()
                if line.startswith("soc_audit_events_folded_total")
            )
            pending = sum(
                float(line.split()[-1])
                for line in first.text.splitlines()
                if line.startswith("soc_proposals_pending{")
            )
            times = []
            for _ in range(args.scrapes):
                began = time.perf_counter()
                client.get(url).raise_for_status()
                times.append(time.perf_counter() - began)
        print(f"machine: {machine()}; server: soc_console.serve, 2 worker processes; PostgreSQL")
        print(f"pending proposals: {pending:.0f}; audit events folded: {float(folded):.0f}")
        print(f"first scrape (folds the whole audit log): {cold * 1000:8.1f} ms")
        print(
            f"next {args.scrapes} scrapes: median {statistics.median(times) * 1000:.1f} ms, "
            f"max {max(times) * 1000:.1f} ms, {len(first.content)} bytes"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        store = redis.Redis.from_url(redis_url)
        for key in store.scan_iter(f"{prefix}*"):
            store.delete(key)
        if not args.keep_db:
            drop_database(name)


if __name__ == "__main__":
    main()
