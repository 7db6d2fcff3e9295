from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import psycopg
import pytest
import redis
from django.conf import settings
from django.core.management import CommandError
from django.test import TransactionTestCase
from rest_framework.test import APIClient

from agents.selectors import forget_policies
from approvals import live
from tests import factories

# Hypothesis's per-example deadline measures the machine, not the code: the SQLite run shares
# the cores with the PostgreSQL run at the lowest priority, and one example of a pure parser
# test once took 284 ms there. Slow code shows in the benchmarks, which print what they measure.
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")


def flushing_again_after_a_deadlock(flush: Callable[[Any], None]) -> Callable[[Any], None]:
    """A transactional test ends with a flush (TRUNCATE of every table) while servers and
    workers the test started may still be at work on the test database: a live server
    re-rendering the cards of the last decision, a worker node writing. TRUNCATE takes the
    tables one by one, so it can deadlock with them; PostgreSQL then cancels one side, and when
    that is the flush, the next test finds this one's rows. The flush is tried again."""

    def _fixture_teardown(self: Any) -> None:
        for attempt in range(1, FLUSH_ATTEMPTS + 1):
            try:
                return flush(self)
            except CommandError as exc:
                if attempt == FLUSH_ATTEMPTS or not _deadlock(exc):
                    raise
                time.sleep(0.2 * attempt)

    return _fixture_teardown


def _deadlock(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, psycopg.errors.DeadlockDetected):
            return True
        exc = exc.__cause__
    return False


FLUSH_ATTEMPTS = 4
TransactionTestCase._fixture_teardown = flushing_again_after_a_deadlock(
    TransactionTestCase._fixture_teardown
)


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    # The last test's live updates (counts owed after a burst, say) go out before this one
    # listens.
    live.wait_idle()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    # Policy versions are cached by id; a rolled-back test's ids come back on SQLite.
    forget_policies()
    yield


@pytest.fixture(autouse=True)
def _live_idle_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test's last live update (a card's context, counts owed after a burst) runs on the
    broadcaster thread with its own connection: it finishes before the database is flushed, or
    its reads and the flush's TRUNCATE can deadlock. Set up after the database fixture, so
    torn down before it."""
    if "_django_db_helper" in request.fixturenames:
        request.getfixturevalue("_django_db_helper")
    yield
    live.wait_idle()


@pytest.fixture
def analyst(db: None):
    return factories.user("alice", factories.ANALYST)


@pytest.fixture
def analyst2(db: None):
    return factories.user("bob", factories.ANALYST)


@pytest.fixture
def senior(db: None):
    return factories.user("sam", factories.SENIOR)


@pytest.fixture
def manager(db: None):
    return factories.user("maya", factories.MANAGER)


@pytest.fixture
def agent_with_key(db: None) -> factories.AgentWithKey:
    return factories.agent(
        "triage-bot",
        grants={
            "block_ip": 3,
            "isolate_host": 2,
            "kill_process": 3,
            "disable_user": 4,
            "create_ticket": 1,
            "update_firewall_policy": 2,
            "quarantine_email": 0,
        },
    )


@pytest.fixture
def api(agent_with_key: factories.AgentWithKey) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_with_key.raw_key}")
    return client


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-only",
        action="store_true",
        help="run only the tests that use the database (make test-sqlite: the others do not "
        "depend on which database runs, and `make test` ran them already)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--database-only"):
        return
    database = {"db", "transactional_db", "live_server"}
    keep: list[pytest.Item] = []
    skip: list[pytest.Item] = []
    for item in items:
        uses = item.get_closest_marker("django_db") or database & set(
            getattr(item, "fixturenames", ())
        )
        (keep if uses else skip).append(item)
    if skip:
        config.hook.pytest_deselected(items=skip)
        items[:] = keep
