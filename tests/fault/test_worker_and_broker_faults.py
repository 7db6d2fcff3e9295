"""Fault tests against real processes: workers killed with SIGKILL, Redis flushed or restarted,
the emergency stop pulled with work queued, and a burst of concurrent approvals.

What must hold every time: an approved action takes effect exactly once (the connector ledger
has one row per execution key and the simulated system shows one effect), and nothing starts
while the emergency stop is on.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from approvals import connectors, services
from approvals.models import ConnectorCall, ConnectorState, Execution, ExecutionStatus, Proposal
from audit.models import AuditEvent
from soc_console.errors import NotPending
from tests import factories
from tests.fault.conftest import Fleet
from tests.processes import PrivateRedis, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def submit(
    owner: factories.AgentWithKey, count: int, *, action: str, prefix: str
) -> list[Proposal]:
    return [
        factories.proposal(owner, action=action, target=f"{prefix}-{n}@corp.example")
        for n in range(count)
    ]


def approve_all(proposals: list[Proposal], analyst: User) -> list[Execution]:
    for proposal in proposals:
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst, reason="go")
    return list(Execution.objects.filter(proposal__in=proposals))


def statuses() -> Counter[str]:
    return Counter(Execution.objects.values_list("status", flat=True))


def wait_all(status: str, count: int, *, timeout: float) -> None:
    try:
        wait_for(lambda: statuses()[status] == count, timeout=timeout, interval=0.1)
    except TimeoutError:
        raise AssertionError(
            f"not {count} executions {status} after {timeout} s: {dict(statuses())}"
        ) from None


def assert_each_took_effect_once(
    executions: list[Execution], *, connector: str, counter: str
) -> None:
    keys = [e.idempotency_key for e in executions]
    ledger = Counter(
        ConnectorCall.objects.filter(idempotency_key__in=keys).values_list(
            "idempotency_key", flat=True
        )
    )
    assert ledger == Counter(keys), "every execution key exactly once in the connector ledger"
    # No other call on these targets (another test's worker may have left calls of its own).
    targets = [e.proposal.target for e in executions]
    assert not (
        ConnectorCall.objects.filter(target__in=targets).exclude(idempotency_key__in=keys).exists()
    )
    for execution in executions:
        state = connectors.state_of(connector, execution.proposal.target)
        assert state == {counter: 1}, (execution.proposal.target, state)
        assert (
            AuditEvent.objects.filter(
                event_type="execution.succeeded", data__execution=str(execution.id)
            ).count()
            == 1
        )


def test_worker_killed_mid_call_is_recovered_and_every_action_runs_once(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User
) -> None:
    slow = fleet.worker(CONNECTOR_LATENCY_MS=2000)
    fleet.beat()
    executions = approve_all(
        submit(responder, 6, action="reset_password", prefix="killed"), analyst
    )

    # The worker has claimed one and sits inside the connector call (the call is 2 s long and
    # writes nothing until its end).
    wait_for(
        lambda: statuses()[ExecutionStatus.RUNNING] == 1, timeout=15, what="a running execution"
    )
    time.sleep(0.3)
    victim = Execution.objects.get(status=ExecutionStatus.RUNNING)
    assert not ConnectorCall.objects.filter(idempotency_key=victim.idempotency_key).exists()
    slow.kill()
    assert not slow.alive()
    victim.refresh_from_db()
    assert victim.status == ExecutionStatus.RUNNING  # nobody settled it: the worker is gone

    fleet.worker(CONNECTOR_LATENCY_MS=50)
    wait_all(ExecutionStatus.SUCCEEDED, 6, timeout=30)

    victim.refresh_from_db()
    assert victim.attempts == 2
    assert AuditEvent.objects.filter(
        event_type="execution.requeued", data__execution=str(victim.id)
    ).exists()
    assert_each_took_effect_once(executions, connector="identity", counter="password_resets")


def test_worker_killed_at_random_moments_never_doubles_an_effect(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User
) -> None:
    # Kills land before, during and after connector calls, including between a call's commit
    # and the execution's settle: the window only the idempotency key protects.
    executions = approve_all(
        submit(responder, 20, action="reset_password", prefix="random"), analyst
    )
    for pause in (0.9, 0.45, 1.3):
        worker = fleet.worker(CONNECTOR_LATENCY_MS=300, concurrency=2)
        time.sleep(pause)
        worker.kill()
    fleet.beat()
    fleet.worker(concurrency=2)
    wait_all(ExecutionStatus.SUCCEEDED, 20, timeout=40)
    # Both processes were busy the whole time, so the kills did interrupt executions.
    assert AuditEvent.objects.filter(event_type="execution.requeued").exists()
    assert_each_took_effect_once(executions, connector="identity", counter="password_resets")


@pytest.mark.parametrize("outage", ["flushall", "restart"])
def test_messages_lost_in_redis_are_dispatched_by_the_sweeper(
    fleet: Fleet,
    responder: factories.AgentWithKey,
    analyst: User,
    private_redis: PrivateRedis,
    outage: str,
) -> None:
    executions = approve_all(submit(responder, 8, action="reset_password", prefix=outage), analyst)
    queue = fleet.environment.queue
    assert private_redis.client().llen(queue) >= 8  # enqueued on commit, not yet consumed

    if outage == "flushall":
        private_redis.flushall()
    else:
        private_redis.restart()  # no persistence: the queue is gone with the process
    assert private_redis.client().llen(queue) == 0

    fleet.worker(concurrency=2)
    started = time.monotonic()
    fleet.beat()
    wait_all(ExecutionStatus.SUCCEEDED, 8, timeout=20)
    elapsed = time.monotonic() - started
    # Stale bound (1 s) + one sweep interval (1 s), with room for a loaded CI machine.
    assert elapsed < 10, f"the sweeper took {elapsed:.1f} s"
    assert_each_took_effect_once(executions, connector="identity", counter="password_resets")


def test_approvals_made_while_the_broker_is_down_commit_and_run_once_it_is_back(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User, private_redis: PrivateRedis
) -> None:
    proposals = submit(responder, 3, action="reset_password", prefix="outage")
    private_redis.stop()
    began = time.monotonic()
    executions = approve_all(proposals, analyst)  # the on-commit enqueue fails, quietly
    assert time.monotonic() - began < 10
    assert Proposal.objects.filter(status="approved").count() == 3
    assert statuses() == {ExecutionStatus.QUEUED: 3}

    private_redis.start()
    fleet.worker()
    fleet.beat()
    wait_all(ExecutionStatus.SUCCEEDED, 3, timeout=20)
    assert_each_took_effect_once(executions, connector="identity", counter="password_resets")


def test_emergency_stop_with_work_queued_lets_nothing_start(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User, manager: User
) -> None:
    proposals = submit(responder, 10, action="reset_password", prefix="stop")
    approve_all(proposals[:5], analyst)
    services.emergency_stop_engage(by=manager, reason="agent misbehaving")
    assert statuses() == {ExecutionStatus.HELD: 5}
    # Approved while the stop is on: held at once, never sent to a worker.
    during = approve_all(proposals[5:], analyst)
    assert statuses() == {ExecutionStatus.HELD: 10}

    fleet.worker(concurrency=2)
    fleet.beat()
    wait_all(ExecutionStatus.HELD, 10, timeout=20)
    time.sleep(2)  # two sweeps re-dispatch nothing that could start

    assert statuses() == {ExecutionStatus.HELD: 10}
    assert not ConnectorCall.objects.exists()
    assert not AuditEvent.objects.filter(event_type="execution.started").exists()
    # Each execution's hold is on its own timeline: five by the stop itself (the manager's
    # act), five by the approvals that found the stop on.
    held = AuditEvent.objects.filter(event_type="execution.held")
    assert held.filter(actor=manager.get_username()).count() == 5
    assert held.filter(actor="system").count() == 5

    services.emergency_stop_release(by=manager, reason="contained")
    time.sleep(2)
    assert statuses() == {ExecutionStatus.HELD: 10}  # lifting the stop starts nothing by itself

    confirmed = during[0]
    services.execution_reconfirm_held(execution_id=confirmed.id, analyst=analyst)
    wait_all(ExecutionStatus.SUCCEEDED, 1, timeout=15)
    assert Execution.objects.get(status=ExecutionStatus.SUCCEEDED).pk == confirmed.pk
    assert statuses()[ExecutionStatus.HELD] == 9
    assert ConnectorCall.objects.count() == 1


def test_fifty_concurrent_approvals_each_run_exactly_once(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User, analyst2: User
) -> None:
    fleet.worker(concurrency=2)
    fleet.beat()
    proposals = submit(responder, 50, action="revoke_sessions", prefix="burst")
    # Both analysts click approve on every card at once: 100 attempts, one winner per card.
    attempts = [(p.id, who) for p in proposals for who in (analyst, analyst2)]
    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []
    threads_count = 25
    start = threading.Barrier(threads_count)
    lock = threading.Lock()

    def approver(share: list[tuple[Any, User]]) -> None:
        try:
            start.wait()
            for proposal_id, who in share:
                try:
                    services.proposal_approve(proposal_id=proposal_id, analyst=who)
                    outcome = "approved"
                except NotPending:
                    outcome = "already decided"
                finally:
                    # Each thread works on a connection of its own, taken from this process's
                    # pool (as a web server's threads do) and handed back between approvals.
                    connection.close()
                with lock:
                    outcomes[outcome] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=approver, args=(attempts[n::threads_count],))
        for n in range(threads_count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert outcomes == {"approved": 50, "already decided": 50}
    wait_all(ExecutionStatus.SUCCEEDED, 50, timeout=60)
    executions = list(Execution.objects.select_related("proposal"))
    assert len(executions) == 50
    assert all(e.attempts == 1 for e in executions)
    assert AuditEvent.objects.filter(event_type="execution.started").count() == 50
    assert AuditEvent.objects.filter(event_type="proposal.approved").count() == 50
    assert_each_took_effect_once(executions, connector="identity", counter="sessions_revoked")
    assert ConnectorState.objects.filter(connector="identity").count() == 50


WORKER_SESSIONS = "soc-worker-under-test"  # the workers' application_name (libpq's PGAPPNAME)


def _worker_backends() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [WORKER_SESSIONS],
        )
        return {row[0] for row in cursor.fetchall()}


def test_workers_keep_their_connections_and_replace_ones_postgresql_dropped(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User
) -> None:
    # No beat: a task that failed on a dead connection would stay queued, and this test
    # would time out instead of passing late.
    fleet.worker(concurrency=2, PGAPPNAME=WORKER_SESSIONS)
    first = approve_all(submit(responder, 6, action="reset_password", prefix="first"), analyst)
    wait_all(ExecutionStatus.SUCCEEDED, 6, timeout=20)
    before = _worker_backends()
    second = approve_all(submit(responder, 6, action="reset_password", prefix="second"), analyst)
    wait_all(ExecutionStatus.SUCCEEDED, 12, timeout=20)
    kept = _worker_backends()
    # Six more tasks ran on the connections the first six left open: the workers reuse them
    # instead of connecting for every task.
    assert before & kept, (before, kept)

    with connection.cursor() as cursor:  # what a PostgreSQL restart does to them
        for pid in kept:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_for(lambda: not (_worker_backends() & kept), timeout=5, what="the sessions to end")

    third = approve_all(submit(responder, 6, action="reset_password", prefix="third"), analyst)
    wait_all(ExecutionStatus.SUCCEEDED, 18, timeout=20)
    assert not AuditEvent.objects.filter(event_type="execution.requeued").exists()
    assert_each_took_effect_once(
        first + second + third, connector="identity", counter="password_resets"
    )
