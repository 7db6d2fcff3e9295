"""The suite's flush after a transactional test, tried again when a deadlock cancelled it
(tests/conftest.py)."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management import CommandError

from tests.conftest import FLUSH_ATTEMPTS, flushing_again_after_a_deadlock


def _failing(errors: list[Exception]):
    calls: list[int] = []

    def flush(case: object) -> None:
        calls.append(1)
        if errors:
            cause = errors.pop(0)
            try:
                raise cause
            except Exception as exc:
                # As Django's flush command wraps what the database raised.
                raise CommandError("Database test_soc couldn't be flushed.") from exc

    return flush, calls


def test_a_flush_cancelled_by_a_deadlock_is_tried_again() -> None:
    flush, calls = _failing([psycopg.errors.DeadlockDetected("deadlock detected")] * 2)
    flushing_again_after_a_deadlock(flush)(object())
    assert len(calls) == 3


def test_a_flush_that_fails_otherwise_or_keeps_deadlocking_fails_the_test() -> None:
    flush, calls = _failing([psycopg.errors.UndefinedTable("no such table")])
    with pytest.raises(CommandError):
        flushing_again_after_a_deadlock(flush)(object())
    assert len(calls) == 1
    deadlocks = [psycopg.errors.DeadlockDetected("deadlock detected")] * FLUSH_ATTEMPTS
    flush, calls = _failing(deadlocks)
    with pytest.raises(CommandError):
        flushing_again_after_a_deadlock(flush)(object())
    assert len(calls) == FLUSH_ATTEMPTS
