"""Execution benchmark: from an analyst's approval to the connector call, through real Celery.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.execute

Starts its own redis-server on a spare port and a Celery worker (prefork, 2 processes, as in
the Procfile) on its own queue, uses its own database (`soc_bench_execute` on the DATABASE_URL
server, created afresh and migrated, dropped afterwards unless --keep-db) and a zero-latency
connector. Then, one at a time and
interleaved so that both see the same machine:

- approval → connector call: `proposal_approve` commits the decision and the execution and
  enqueues it on commit, the worker claims the execution, and the connector writes its ledger
  row (ConnectorCall.at). Measured from three moments: the commit (the strictest: it includes
  the enqueue, as the reference does), the return of proposal_approve (which also broadcasts
  the decision to the consoles before returning, so the worker may already have called the
  connector: negative values), and the start of the proposal_approve call;
- reference: a no-op Celery task's round trip, from apply_async to the task running in the
  worker (its own clock reading, pushed to Redis).

The approvals' undo window (APPROVAL_UNDO_SECONDS) is a deliberate wait, not latency: by
default the benchmark runs with the window off (0), which measures the path above. With
`--undo-seconds S` the window is on and both sides wait it out: approval → call is measured
from the end of the window (the execution's not_before, when the action may first run), and
the reference no-op is sent with the same countdown and measured from its due time. Rounds
then take S seconds each: use a smaller -n.

A callbacks worker runs beside the executions' worker, as in the Procfile. With
--trickling-callbacks, before the first round another agent gets 50 approvals and its callback
URL is a receiver on 127.0.0.1 that answers a byte every 4 s: its deliveries (and their retries)
keep the callbacks worker busy for the whole run, and the figures show whether executions
notice.

Prints p50/p99/max of each and the ratios; the target is approval → call p99 ≤ 250 ms and
≤ 2× the reference p99. A benchmark prints what it measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis
from celery import shared_task

from bench.common import drop_database, machine, percentile, scratch_database
from tests.receivers import TricklingReceiver

QUEUE = "bench-execute"
T = TypeVar("T")
NOOP_RESULTS = "bench:noop"


@shared_task(name="bench.noop", ignore_result=True)
def noop(reply_to: str) -> None:
    # The reference round trip: do nothing but say when the worker ran it.
    redis.Redis.from_url(os.environ["REDIS_URL"]).rpush(reply_to, repr(time.time()))


@dataclass
class Series:
    name: str
    millis: list[float]

    def line(self) -> str:
        return (
            f"  {self.name:<44} p50 {percentile(self.millis, 50):7.1f} ms   "
            f"p99 {percentile(self.millis, 99):7.1f} ms   max {max(self.millis):7.1f} ms"
        )


def _wait_for(check: Callable[[], T | None], timeout: float, poll: float = 0.025) -> T:
    # The measured times are the worker's own clock readings, so polling slowly loses no
    # precision, and it leaves the two cores to the worker instead of to this loop.
    # It looks only after a first pause: a query right away would compete for the two cores
    # with the worker while it runs the very path being measured.
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(poll)
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not answer in time")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-n", "--approvals", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=20, help="rounds measured but not counted")
    parser.add_argument("--database", default="soc_bench_execute")
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--undo-seconds",
        type=float,
        default=0.0,
        help="APPROVAL_UNDO_SECONDS; 0 (the default) measures without the undo window",
    )
    parser.add_argument(
        "--trickling-callbacks",
        action="store_true",
        help="50 approvals of an agent whose callback receiver trickles a byte every 4 s",
    )
    args = parser.parse_args()

    from tests import processes

    # Afresh: a previous run's rows (the audit chain, the queue counters the live updates
    # compute) would make runs incomparable.
    drop_database(args.database)
    database_url = scratch_database(args.database)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-execute-"))
    broker = processes.start_redis(log_dir)
    worker = callbacks_worker = None
    trickle = TricklingReceiver(interval=4.0, hold=600)
    receivers = contextlib.ExitStack()
    trickling = ""
    try:
        environment = processes.CeleryEnvironment(
            database_url=database_url,
            redis_url=broker.url(),
            queue=QUEUE,
            channel_prefix=QUEUE,
            extra={
                "CONNECTOR_LATENCY_MS": "0",
                "CONNECTOR_FAILURE": "",
                "APPROVAL_UNDO_SECONDS": str(args.undo_seconds),
                # The trickling receiver listens on 127.0.0.1.
                "CALLBACK_ALLOW_PRIVATE_NETWORKS": "1",
            },
        )
        # This process is configured exactly like the worker: same database, broker, queue.
        os.environ.update(environment.build())
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        worker = processes.start_worker(
            environment,
            log_dir=log_dir,
            concurrency=args.concurrency,
            include=["bench.execute"],
        )
        callbacks_worker = processes.start_worker(
            environment,
            log_dir=log_dir,
            queue=f"{QUEUE}-callbacks",
            pool="threads",
            concurrency=8,
        )
        if args.trickling_callbacks:
            receivers.enter_context(trickle)
            listened = listen_slowly(trickle)
        measured, reference = run(args.approvals, args.warmup, args.undo_seconds)
        if args.trickling_callbacks:
            held = trickle.finished()
            trickling = (
                f"callbacks: {listened} approvals of an agent whose receiver answers a byte every "
                f"4 s; {len(trickle.holds)} deliveries reached it during the run, "
                f"{len(held)} cut off, longest {max(h.seconds for h in held):.1f} s"
            )
    finally:
        for process in (worker, callbacks_worker):
            if process is not None:
                process.stop()
        receivers.close()
        broker.stop()
        if not args.keep_db:
            from django.apps import apps
            from django.db import connections

            if apps.ready:
                connections.close_all()
            drop_database(args.database)

    print(f"machine: {machine()}; PostgreSQL, Redis, Celery prefork x{args.concurrency}")
    if args.trickling_callbacks:
        print(trickling)
    window = f", undo window {args.undo_seconds:g} s" if args.undo_seconds else ", no undo window"
    print(
        f"{args.approvals} approvals after {args.warmup} warm-up rounds, zero-latency connector"
        f"{window}:"
    )
    for series in (*measured, reference):
        print(series.line())
    reference99 = percentile(reference.millis, 99)
    for series in measured[:2]:
        p99 = percentile(series.millis, 99)
        verdict = "met" if p99 <= 250 and p99 <= 2 * reference99 else "NOT met"
        print(
            f"  {series.name}: p99 {p99 / reference99:.2f}x the reference p99; "
            f"target p99 <= 250 ms and <= 2x reference: {verdict}"
        )


def listen_slowly(trickle: TricklingReceiver, count: int = 50) -> int:
    """`count` approvals of an agent whose callbacks go to the trickling receiver; returns once
    their executions ran and the receiver holds deliveries, so that the rounds measure a
    callbacks worker under siege, not an executions' worker still catching up."""
    from django.contrib.auth.models import Group, User

    from agents.models import Agent
    from agents.services import agent_register
    from approvals import services
    from approvals.models import Execution, ExecutionStatus
    from soc_console.roles import ANALYST

    analyst, _ = User.objects.get_or_create(username="bench-listener-analyst")
    analyst.groups.add(Group.objects.get_or_create(name=ANALYST)[0])
    agent, _key = agent_register(
        slug=f"bench-listener-{uuid.uuid4().hex[:8]}",
        by="bench",
        grants={"block_ip": 2},
        max_pending=10**9,
        max_proposals_per_minute=10**9,
    )
    Agent.objects.filter(pk=agent.pk).update(callback_url=trickle.url, callback_secret="s" * 64)
    agent.refresh_from_db()
    for n in range(count):
        proposal = services.proposal_submit(
            agent=agent,
            api_key=None,
            action="block_ip",
            target=f"198.19.{n // 250}.{n % 250 + 1}",
            params={},
            confidence=0.8,
            rationale="benchmark: a listening agent",
            evidence=[],
            severity="high",
            idempotency_key=None,
            request_hash=str(n),
        ).proposal
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    _wait_for(
        lambda: (
            Execution.objects.filter(
                proposal__agent=agent, status=ExecutionStatus.SUCCEEDED
            ).count()
            == count
            or None
        ),
        timeout=60,
    )
    _wait_for(lambda: len(trickle.holds) >= 8 or None, timeout=30)
    return count


def run(count: int, warmup: int, undo: float) -> tuple[list[Series], Series]:
    from django.contrib.auth.models import Group, User
    from django.db import transaction

    from agents.services import agent_register
    from approvals import services
    from approvals.models import ConnectorCall, Execution, ExecutionStatus
    from soc_console.roles import ANALYST

    run_id = uuid.uuid4().hex[:8]
    analyst, _ = User.objects.get_or_create(username="bench-analyst")
    analyst.groups.add(Group.objects.get_or_create(name=ANALYST)[0])
    # One agent proposes every measured action: its circuit breaker is set beyond them.
    agent, _key = agent_register(
        slug=f"bench-{run_id}",
        by="bench",
        grants={"block_ip": 2},
        max_pending=10**9,
        max_proposals_per_minute=10**9,
    )
    results = redis.Redis.from_url(os.environ["REDIS_URL"])
    reply_to = f"{NOOP_RESULTS}:{run_id}"

    from_commit: list[float] = []
    from_return: list[float] = []
    from_call: list[float] = []
    from_window_end: list[float] = []
    reference: list[float] = []
    for n in range(warmup + count):
        # Reference: a bare Celery round trip (with the window: the same countdown, from when
        # it is due).
        sent = time.time()
        noop.apply_async((reply_to,), queue=QUEUE, countdown=undo or None)
        _key, ran = results.blpop([reply_to], timeout=10 + undo) or (None, None)
        if ran is None:
            raise TimeoutError("the no-op task did not run")
        reference_ms = (float(ran) - sent - undo) * 1000

        # The product path: a pending proposal, approved, executed by the worker.
        proposal = services.proposal_submit(
            agent=agent,
            api_key=None,
            action="block_ip",
            target=f"198.18.{(n // 250) % 250}.{n % 250 + 1}",
            params={},
            confidence=0.8,
            rationale="benchmark",
            evidence=[{"kind": "alert", "ref": f"BENCH-{n}"}],
            severity="high",
            idempotency_key=f"{run_id}-{n}",
            request_hash=f"{run_id}-{n}",
        ).proposal
        committed: list[float] = []
        called = time.time()
        with transaction.atomic():
            # Registered first, so it runs first after the commit: before the enqueue.
            transaction.on_commit(lambda committed=committed: committed.append(time.time()))
            approved = services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
        returned = time.time()
        key = approved.execution.idempotency_key  # the approval's own row: no query
        not_before = approved.execution.not_before
        if undo:
            # Nothing to look at while the window is open: wait it out without a query.
            time.sleep(max(not_before.timestamp() - time.time(), 0))
        at = _wait_for(
            lambda key=key: (
                ConnectorCall.objects.filter(idempotency_key=key)
                .values_list("at", flat=True)
                .first()
            ),
            timeout=10,
        )
        # Let the execution settle before the next round, so rounds do not queue up.
        _wait_for(
            lambda proposal=proposal: Execution.objects.filter(
                proposal=proposal, status=ExecutionStatus.SUCCEEDED
            ).first(),
            timeout=10,
        )
        time.sleep(0.02)
        if n >= warmup:
            reference.append(reference_ms)
            if undo:
                from_window_end.append((at.timestamp() - not_before.timestamp()) * 1000)
            else:
                from_commit.append((at.timestamp() - committed[0]) * 1000)
                from_return.append((at.timestamp() - returned) * 1000)
                from_call.append((at.timestamp() - called) * 1000)
    if undo:
        return (
            [Series("approval -> connector call, from the window's end", from_window_end)],
            Series("reference: Celery no-op, from its countdown's end", reference),
        )
    return (
        [
            Series("approval -> connector call, from the commit", from_commit),
            Series("approval -> connector call, from the return", from_return),
            Series("approval -> connector call, from the call", from_call),
        ],
        Series("reference: Celery no-op round trip", reference),
    )


if __name__ == "__main__":
    main()
