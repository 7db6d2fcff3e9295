"""The latency report reads its period of proposals from the covering index alone.

Every column the statements read of a proposal is in `proposal_report_scan` (migration
audit 0009), `synthetic` included: when a filter reads a column the index lacks, PostgreSQL
visits every proposal row of the period again, and the 28-day page took 10 % longer. The
planner is told not to scan the table or build bitmaps, so that an index-only scan is what it
picks when it can and an index scan with row visits shows that it cannot."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit import reports
from audit.reports import periods
from tests import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

INDEX = "proposal_report_scan"


def _statements(f: reports.Filters) -> list[tuple[str, list[object]]]:
    seen: list[tuple[str, list[object]]] = []

    def keep(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        seen.append((sql, list(params or [])))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        reports.latency(f)
    return seen


def _plan(sql: str, params: list[object]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_bitmapscan = off")
        try:
            cursor.execute("EXPLAIN " + sql, params)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_bitmapscan")


def test_the_queue_and_the_breakdowns_read_proposals_from_the_index_alone() -> None:
    bot = factories.agent("idx-bot", grants={"isolate_host": 1})
    for n in range(30):
        factories.proposal(bot, target=f"ws-{n:04d}.corp.example")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE approvals_proposal")
    now = timezone.now()
    f = reports.Filters(since=now - timedelta(days=28), until=now + timedelta(days=1))
    with periods.exact():
        statements = _statements(f)
    # The queue's walk over arrivals and departures, and the breakdowns by action, agent
    # and hour: the two statements that read the whole period of proposals.
    queue = [s for s in statements if "moves AS" in s[0]]
    grouped = [s for s in statements if "GROUP BY k3" in s[0]]
    assert len(queue) == 1 and len(grouped) == 1, [s[0][:80] for s in statements]
    for sql, params in queue + grouped:
        plan = _plan(sql, params)
        assert f"Index Only Scan using {INDEX}" in plan, plan
        assert not re.search(r"(?<!Only )Index Scan using \S+ on approvals_proposal", plan), plan
