"""/healthz says ok only when the database, Redis and a recent worker heartbeat are all there."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from approvals import tasks
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
