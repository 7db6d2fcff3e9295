"""Reports read from the replica when there is one (DATABASE_REPLICA_URL).

A report's reads run inside `reports()`; the router sends the ORM's reads made there to
REPORTS_DATABASE, and `alias()` names it for hand-written statements. Everything else, every
write and every read outside a report, goes to "default": a replica lags its primary by a
moment, which a report over days does not notice and a decision must never see.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_in_report: ContextVar[bool] = ContextVar("soc_in_report", default=False)


@contextlib.contextmanager
def reports() -> Iterator[str]:
    """Within the block, the ORM's reads go to the reports' connection, whose alias it gives."""
    token = _in_report.set(True)
    try:
        yield alias()
    finally:
        _in_report.reset(token)


def reading_reports(view: Callable[P, R]) -> Callable[P, R]:
    """A view whose reads are a report's (the page, its figures, its CSV). When the replica
    does not answer, the report is read from the primary instead of failing: it only reads."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with reports() as alias:
            try:
                with custom_plans(alias):
                    return view(*args, **kwargs)
            except OperationalError:
                if alias == DEFAULT_DB_ALIAS:
                    raise
                logger.warning("the replica does not answer; reading the report from the primary")
                connections[alias].close()
        with custom_plans(DEFAULT_DB_ALIAS):
            return view(*args, **kwargs)

    return wrapped


@contextlib.contextmanager
def custom_plans(using: str) -> Iterator[None]:
    """Within the block, PostgreSQL plans each statement for the values it is given.

    A connection prepares a statement it has run five times (settings: prepared statements),
    and after five more runs PostgreSQL may settle on a generic plan, blind to the period a
    report covers: from its eleventh render on one connection, fatigue over the whole history
    of the 100,000-decision benchmark took 1.48 s instead of 0.57. A report's statement runs
    for tens or hundreds of milliseconds and is planned in one or two.

    The block is one transaction and the setting is the transaction's (SET LOCAL): behind a
    pooler that lends a server connection per transaction, the page's statements and the
    setting go to the same one, and nothing of it outlives the block.
    """
    connection = connections[using]
    prepared = connection.settings_dict.get("OPTIONS", {}).get("prepare_threshold")
    if connection.vendor != "postgresql" or prepared is None:
        yield
        return
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield


def alias() -> str:
    """The connection a read should use here: the reports' inside `reports()`, else default."""
    return settings.REPORTS_DATABASE if _in_report.get() else DEFAULT_DB_ALIAS


class ReportsRouter:
    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return settings.REPORTS_DATABASE if _in_report.get() else None

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # A row read from the replica is the primary's row: they may refer to each other.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # The replica follows the primary's schema by replication, never by `migrate`.
        return db == DEFAULT_DB_ALIAS
