"""One sweep at a time: a sweep that finds another holding the lock skips its turn, and two
sweeps started together escalate each proposal once and dispatch each lost execution once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.utils import timezone

from approvals import services
from approvals.models import Execution, Proposal
from audit.models import AuditEvent
from tests import factories
from tests.execution.conftest import approved, broker_messages

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _work_for_a_sweep(
    responder: factories.AgentWithKey, analyst: User
) -> tuple[Proposal, Execution]:
    """A proposal due for escalation and an execution whose message was lost long ago."""
    due = factories.proposal(responder, action="isolate_host", target="ws-0042.corp.example")
    Proposal.objects.filter(pk=due.pk).update(escalate_at=timezone.now() - timedelta(seconds=1))
    lost = approved(responder, analyst, action="block_ip", target="203.0.113.9")
    Execution.objects.filter(pk=lost.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    return due, lost


def _dispatched(execution: Execution) -> int:
    return sum(m["args"] == [str(execution.id)] for m in broker_messages())


def test_a_sweep_skips_its_turn_while_another_holds_the_lock(
    responder: factories.AgentWithKey, analyst: User, senior: User
) -> None:
    due, lost = _work_for_a_sweep(responder, analyst)
    before = _dispatched(lost)
    other = connections.create_connection("default")  # another worker's session
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext('soc.sweep'))")
        report = services.sweep()
        assert report.skipped and report.escalated == report.redispatched == 0
        due.refresh_from_db()
        assert due.escalated_at is None
        assert _dispatched(lost) == before

        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext('soc.sweep'))")
        report = services.sweep()
        assert not report.skipped
        assert (report.escalated, report.redispatched, report.digested) == (1, 1, 1)
        assert _dispatched(lost) == before + 1
    finally:
        other.close()
    # The sweep let go of its lock: another session takes it at once.
    probe = connections.create_connection("default")
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtext('soc.sweep'))")
            assert cursor.fetchone()[0] is True
    finally:
        probe.close()


def test_sweeps_started_together_do_each_thing_once(
    responder: factories.AgentWithKey, analyst: User, senior: User
) -> None:
    due, lost = _work_for_a_sweep(responder, analyst)
    before = _dispatched(lost)
    start = threading.Barrier(4)
    reports: list[Any] = []

    def one_sweep() -> None:
        try:
            start.wait()
            reports.append(services.sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=one_sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(reports) == 4
    assert sum(r.escalated for r in reports) == 1
    assert sum(r.redispatched for r in reports) == 1
    assert _dispatched(lost) == before + 1
    events = Counter(
        AuditEvent.objects.filter(
            event_type__in=["proposal.escalated", "escalation.digest_sent"]
        ).values_list("event_type", flat=True)
    )
    assert events == {"proposal.escalated": 1, "escalation.digest_sent": 1}
