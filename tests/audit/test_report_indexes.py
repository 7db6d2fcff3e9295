"""The reports read their period of proposals from the covering index alone.

Every column the statements read of a proposal is in `proposal_report_real` (migration
audit 0010), which holds the rows the reports count (`NOT synthetic`, its predicate), and the
counts count a column it holds (audit.reports.query.counted), not the id it lacks: when a
statement reads a column the index lacks, PostgreSQL visits every proposal row of the period
again, and the 28-day latency page took 10 % longer. The planner is told not to scan the
table or build bitmaps, so that an index-only scan is what it picks when it can and an index
scan with row visits shows that it cannot. And a report page's statements are planned for
the period they are given on every render, however often the connection has run them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit import reports
from audit.reports import periods
from tests import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

INDEX = "proposal_report_real"

Statement = tuple[str, list[object]]


def _statements(report: Callable[[reports.Filters], object], f: reports.Filters) -> list[Statement]:
    seen: list[Statement] = []

    def keep(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        seen.append((sql, list(params or [])))
        return execute(sql, params, many, context)

    with periods.exact(), connection.execute_wrapper(keep):
        report(f)
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


def _from_the_index_alone(sql: str, params: list[object]) -> None:
    plan = _plan(sql, params)
    assert f"Index Only Scan using {INDEX}" in plan, plan
    assert not re.search(r"(?<!Only )Index Scan using \S+ on approvals_proposal", plan), plan


@pytest.fixture
def period() -> reports.Filters:
    bot = factories.agent("idx-bot", grants={"isolate_host": 1})
    for n in range(30):
        factories.proposal(bot, target=f"ws-{n:04d}.corp.example")
    with connection.cursor() as cursor:
        # Earlier tests' rolled-back rows leave the table and its indexes larger than these
        # 30 rows, which moves the planner's costs: rewritten compact, then vacuumed (the
        # visibility map) and analysed.
        cursor.execute("VACUUM FULL approvals_proposal")
        cursor.execute("VACUUM ANALYZE approvals_proposal")
    now = timezone.now()
    return reports.Filters(since=now - timedelta(days=28), until=now + timedelta(days=1))


def test_the_latency_reports_reads_of_the_period_use_the_index_alone(
    period: reports.Filters,
) -> None:
    statements = _statements(reports.latency, period)
    # The queue's walk over arrivals and departures, the breakdowns by action, agent and hour,
    # and the SLA's counts: the statements that read the whole period of proposals alone.
    queue = [s for s in statements if "moves AS" in s[0]]
    grouped = [s for s in statements if "GROUP BY k3" in s[0]]
    sla = [s for s in statements if '"pending_late"' in s[0]]
    assert len(queue) == len(grouped) == len(sla) == 1, [s[0][:80] for s in statements]
    for sql, params in queue + grouped + sla:
        _from_the_index_alone(sql, params)


def _prepared() -> dict[str, tuple[int, int]]:
    """This connection's prepared statements: text → (generic plans, custom plans)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return {statement: (generic, custom) for statement, generic, custom in cursor.fetchall()}


@pytest.mark.parametrize("report", ["latency", "fatigue", "trust", "whatif"])
def test_a_report_page_plans_each_statement_for_its_period_every_time(
    period: reports.Filters, client: Client, manager: User, report: str
) -> None:
    # The connection prepares a statement after its fifth run; after five more, PostgreSQL
    # may switch to a generic plan, blind to the period. A report page asks for custom plans.
    client.force_login(manager)
    query = f"report={report}&since={period.since:%Y-%m-%d}&until={period.until:%Y-%m-%d}"
    earlier = _prepared()  # the fixture's own writes
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        mode = cursor.fetchone()
    with periods.exact():
        for _ in range(12):
            assert client.get(f"/reports/?{query}").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == mode  # the connection is as it was, after the page
    prepared = {s: plans for s, plans in _prepared().items() if s not in earlier}
    read = [plans for s, plans in prepared.items() if "approvals_proposal" in s]
    assert read, "no report statement was prepared"
    assert all(generic == 0 for generic, _ in read), prepared
    assert max(custom for _, custom in read) >= 7, prepared
