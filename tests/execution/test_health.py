"""/healthz says ok only when the database, Redis and a recent worker heartbeat are all there;
/readyz only when the database answers and no migration is pending."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import Client

from approvals import tasks
from soc_console import health
from tests.processes import free_port

pytestmark = pytest.mark.django_db


def test_healthz_is_ok_with_database_redis_and_a_fresh_heartbeat(client: Client) -> None:
    tasks.heartbeat()
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == body["redis"] == body["workers"] == "ok"


def test_healthz_is_degraded_before_any_worker_heartbeat(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["workers"].startswith("degraded")
    assert response.json()["database"] == "ok"


def test_healthz_is_degraded_when_the_heartbeat_is_stale(client: Client, settings: Any) -> None:
    cache.set(tasks.HEARTBEAT_KEY, time.time() - settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS - 5)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "last heartbeat" in response.json()["workers"]


def test_healthz_is_degraded_when_redis_does_not_answer(client: Client, settings: Any) -> None:
    tasks.heartbeat()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"].startswith("degraded")


def test_healthz_is_degraded_when_the_broker_does_not_answer(client: Client, settings: Any) -> None:
    tasks.heartbeat()
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("degraded")


def test_healthz_needs_no_login(client: Client) -> None:
    tasks.heartbeat()
    assert client.get("/healthz").status_code == 200


# --- readiness ------------------------------------------------------------------------------


@pytest.fixture
def fresh_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    # A process remembers that its migrations were complete; each test starts as a new one.
    monkeypatch.setattr(health, "_migrated", False)


def test_readyz_is_ready_with_the_database_migrated(client: Client, fresh_readiness: None) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "migrations": "ok"}


def test_readyz_is_not_ready_while_a_migration_is_pending(
    client: Client, fresh_readiness: None
) -> None:
    # As if `migrate` had not yet applied the audit app's latest migration (the test's
    # transaction puts the row back afterwards).
    app, name = next(n for n in MigrationLoader(connection).graph.leaf_nodes() if n[0] == "audit")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = %s AND name = %s", [app, name])
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["database"] == "ok"
    assert body["migrations"] == f"pending: 1 (audit.{name})"
    # Liveness is another question: the process is alive and /healthz says so.
    tasks.heartbeat()
    assert client.get("/healthz").status_code == 200


def test_readyz_is_not_ready_without_the_database() -> None:
    # A process whose database does not answer (nothing listens on the port): a real
    # connection attempt, refused at once.
    script = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz'); print(r.status_code); print(r.content.decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=django_settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "soc_console.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/soc",
            "DATABASE_POOL_MAX": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    status, body = done.stdout.strip().splitlines()[-2:]
    assert status == "503", done.stderr
    answer = json.loads(body)
    assert answer["status"] == "not ready"
    assert answer["database"] == "degraded: OperationalError"
    assert answer["migrations"] == "unknown: no database"
