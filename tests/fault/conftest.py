"""Fixtures for the fault tests: a private Redis, real Celery workers and beat, one database.

Rows are committed (transactional tests) so that the worker processes see them; the workers
get the test database's URL and a Redis of their own, and so does this process's Celery app,
so nothing here can touch the shared Redis or anyone's queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from kombu import pools

from soc_console.celery import app
from tests import factories, processes

# Short clocks so that a lost lease or a lost message is recovered in seconds, not minutes.
FAST_RECOVERY = {
    "EXECUTION_LEASE_SECONDS": "3",
    "SWEEP_INTERVAL_SECONDS": "1",
    "EXECUTION_QUEUED_STALE_SECONDS": "1",
    "EXECUTION_BACKOFF_BASE_SECONDS": "0.2",
    "WORKER_HEARTBEAT_INTERVAL_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}

FAULT_GRANTS = {"reset_password": 2, "revoke_sessions": 2, "block_ip": 2, "isolate_host": 2}


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.PrivateRedis]:
    server = processes.start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


def _point_celery_at(url: str) -> None:
    # The app keeps a connection and producer pool to the broker it first used (in kombu's
    # registry, per broker URL); empty both so that the next publish connects to `url`.
    # Celery does the same after a fork.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.broker_url = url


@pytest.fixture
def broker(private_redis: processes.PrivateRedis, settings: Any) -> Iterator[str]:
    """This process publishes to the private Redis for the length of one test."""
    if not private_redis.answers():  # an earlier test stopped it and then failed
        private_redis.start()
    private_redis.flushall()
    url = private_redis.url()
    previous = app.conf.broker_url
    settings.CELERY_BROKER_URL = url
    _point_celery_at(url)
    try:
        yield url
    finally:
        _point_celery_at(previous)


@pytest.fixture
def celery_environment(transactional_db: None, broker: str) -> processes.CeleryEnvironment:
    return processes.CeleryEnvironment(
        database_url=processes.database_url(),
        redis_url=broker,
        queue=settings.CELERY_TASK_DEFAULT_QUEUE,
        channel_prefix=f"{settings.CHANNEL_PREFIX}-fault",
        extra=dict(FAST_RECOVERY),
    )


class Fleet:
    """Starts workers and beat for one test and stops every one of them afterwards."""

    def __init__(self, environment: processes.CeleryEnvironment, log_dir: Path) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.started: list[processes.ManagedProcess] = []

    def worker(self, **env: Any) -> processes.ManagedProcess:
        options = {k: env.pop(k) for k in ("pool", "concurrency", "queue") if k in env}
        process = processes.start_worker(
            self.environment,
            log_dir=self.log_dir,
            **options,
            **{k: str(v) for k, v in env.items()},
        )
        self.started.append(process)
        return process

    def beat(self) -> processes.ManagedProcess:
        process = processes.start_beat(self.environment, log_dir=self.log_dir)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop(timeout=5)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-4000:]}" for p in self.started)


@pytest.fixture
def fleet(
    celery_environment: processes.CeleryEnvironment,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Fleet]:
    started = Fleet(celery_environment, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(started.logs())  # shown with the failure: what the workers said


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def responder(transactional_db: None) -> factories.AgentWithKey:
    # The fault tests send bursts: the circuit breaker and the budgets are set above them.
    return factories.agent(
        "fault-responder",
        grants=FAULT_GRANTS,
        budgets={action: (10**6, 10**6) for action in FAULT_GRANTS},
        max_pending=10**6,
        max_proposals_per_minute=10**6,
    )
