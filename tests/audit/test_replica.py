"""Reports read from the replica (DATABASE_REPLICA_URL): the router sends a report's reads to
the reports' connection and nothing else there, and the replica's rows give the same report.

The suite's "replica" alias is a second connection to the test database (tests/settings.py), so
the rows the test commits are on both, and each connection records the statements it ran.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connections, router
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals.models import Decision, Proposal
from soc_console import replica
from tests.audit.history_builder import BASE, proposal
from tests.processes import free_port

PERIOD = {"since": "2026-11-17", "until": "2026-11-18"}
REPORT_TABLES = re.compile(r'"approvals_(proposal|decision|execution)"')

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, databases="__all__")]


def _history(agent, analyst) -> None:
    for minutes in range(1, 8):
        proposal(
            agent,
            created_at=BASE + timedelta(minutes=minutes * 3),
            decided_after=timedelta(minutes=minutes),
            analyst=analyst,
        )


def _tables(page: str) -> list[str]:
    tables = re.findall(r'<table class="report-table">.*?</table>', page, re.S)
    assert tables
    return tables


def _report_statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if REPORT_TABLES.search(q["sql"])]


def _read_reports(client: Client) -> tuple[str, str, list[str], list[str]]:
    with (
        CaptureQueriesContext(connections["replica"]) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        page = client.get("/reports/", {"report": "latency", **PERIOD})
        exported = client.get("/reports/latency.csv", PERIOD)
    assert page.status_code == exported.status_code == 200
    return (
        page.content.decode(),
        exported.content.decode(),
        _report_statements(on_replica),
        _report_statements(on_primary),
    )


def test_reports_read_from_the_replica_and_show_the_same_figures(
    settings, agent_with_key, analyst, manager
) -> None:
    _history(agent_with_key.agent, analyst)
    client = Client()
    client.force_login(manager)
    page, exported, on_replica, on_primary = _read_reports(client)
    assert not on_replica and on_primary  # unset: reports read the primary

    settings.REPORTS_DATABASE = "replica"
    page_again, exported_again, on_replica, on_primary = _read_reports(client)
    assert on_replica, "the report's statements ran on the replica's connection"
    assert on_primary == [], on_primary
    # The same rows through either connection: the same page and the same CSV.
    assert exported_again == exported
    assert _tables(page_again) == _tables(page)
    assert "Not enough data: 7 proposals" in exported, exported[:300]


def test_a_report_reads_the_primary_while_the_replica_does_not_answer(
    settings, agent_with_key, analyst, manager
) -> None:
    _history(agent_with_key.agent, analyst)
    client = Client()
    client.force_login(manager)
    settings.REPORTS_DATABASE = "replica"
    replica_connection = connections["replica"]
    replica_connection.close()
    port = replica_connection.settings_dict["PORT"]
    replica_connection.settings_dict["PORT"] = free_port()  # nothing listens there
    try:
        with CaptureQueriesContext(connections["default"]) as on_primary:
            page = client.get("/reports/", {"report": "latency", **PERIOD})
            exported = client.get("/reports/latency.csv", PERIOD)
    finally:
        replica_connection.close()
        replica_connection.settings_dict["PORT"] = port
    assert page.status_code == exported.status_code == 200
    assert _report_statements(on_primary)
    assert "Not enough data: 7 proposals" in exported.content.decode()


def test_only_a_report_reads_the_replica_and_nothing_is_written_there(settings) -> None:
    settings.REPORTS_DATABASE = "replica"
    assert router.db_for_read(Proposal) == "default"
    with replica.reports() as alias:
        assert alias == "replica"
        assert router.db_for_read(Proposal) == "replica"
        assert router.db_for_read(Decision) == "replica"
        # A row a report read is still written to the primary.
        assert router.db_for_write(Proposal) == "default"
    assert router.db_for_read(Proposal) == "default"
    assert not router.allow_migrate("replica", "approvals")


def _configured(**env: str) -> subprocess.CompletedProcess[str]:
    script = (
        "from django.conf import settings as s; "
        "r = s.DATABASES.get('replica') or {}; "
        "print(s.REPORTS_DATABASE, r.get('NAME'), r.get('TEST'), 'pool' in r.get('OPTIONS', {}))"
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "soc_console.settings",
        "DATABASE_POOL_MAX": "4",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=60
    )


def test_a_replica_url_adds_the_reports_connection_and_a_bad_one_stops_start_up() -> None:
    primary = "postgres://app@db-primary:5432/soc"
    configured = _configured(
        DATABASE_URL=primary, DATABASE_REPLICA_URL="postgres://reader@db-replica:5432/soc"
    )
    assert configured.stdout.split() == ["replica", "soc", "{'MIRROR':", "'default'}", "True"]
    assert _configured(DATABASE_URL=primary, DATABASE_REPLICA_URL="").stdout.split()[0] == (
        "default"
    )
    refused = _configured(DATABASE_URL=primary, DATABASE_REPLICA_URL="sqlite:///reports.db")
    assert refused.returncode != 0
    assert "DATABASE_REPLICA_URL must be a postgres:// URL" in refused.stderr
