"""The queue page's server time with a full queue.

    python -m bench.queue [--pending 5000] [--renders 10]

Builds a scratch PostgreSQL database on the server of DATABASE_URL, fills it with seed_demo's
users, agents and assets and --pending pending proposals submitted through the services, then
renders the queue page as an analyst in this process (the view, its queries and its template:
what the server spends on one request, without the network) and prints the query count and the
render times. tests/console/test_queue.py holds the query count constant; this prints the time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid

from bench.common import ROOT, drop_database, machine, scratch_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=5000)
    parser.add_argument("--renders", type=int, default=10)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    name = f"bench_queue_{uuid.uuid4().hex[:8]}"
    prefix = f"bench-queue-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="soc_console.settings",
        DATABASE_URL=scratch_database(name),
        CHANNEL_PREFIX=prefix,
        CELERY_QUEUE=prefix,
        LOG_LEVEL="WARNING",
        DEBUG="1",  # the development key and plain static names: nothing here is served
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    try:
        call_command("migrate", "--noinput", verbosity=0)
        started = time.monotonic()
        call_command("seed_demo", "--weeks", "0", "--pending", str(args.pending), verbosity=0)
        print(f"machine: {machine()}")
        print(f"seed_demo --pending {args.pending}: {time.monotonic() - started:.1f} s")
        client = Client()
        client.force_login(User.objects.get(username="analyst"))
        client.get("/")  # warm: templates compiled, connection open
        times = []
        for _ in range(args.renders):
            with CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                response = client.get("/")
                times.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise SystemExit(f"the queue page answered {response.status_code}")
        print(
            f"queue page at {args.pending} pending, {args.renders} renders as an analyst: "
            f"{len(queries)} queries; best {min(times) * 1000:.1f} ms, "
            f"median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms; "
            f"page {len(response.content) / 1000:.0f} KB"
        )
    finally:
        from approvals import live

        live.wait_idle()  # the seeding's live updates go out before the database goes
        connection.close()
        if not args.keep_db:
            drop_database(name)


if __name__ == "__main__":
    main()
