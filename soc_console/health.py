"""/healthz: the database, Redis, the Celery broker and the workers' heartbeat (is the console
working?). /readyz: may this web process take traffic (its database answers and every migration
it knows is applied)?"""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from approvals.tasks import HEARTBEAT_KEY


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # the point is to report any failure, whatever it is
        return f"degraded: {exc.__class__.__name__}"


def _ping(url: str) -> str:
    # Short timeouts: a load balancer's probe must get an answer, not hang with Redis.
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
        return "ok"
    except Exception as exc:
        return f"degraded: {exc.__class__.__name__}"
    finally:
        client.close()


def _broker() -> str:
    if not settings.BROKER_IS_RABBITMQ:
        return _ping(settings.CELERY_BROKER_URL)
    from kombu import Connection

    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=1) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, timeout=1)
        return "ok"
    except Exception as exc:
        return f"degraded: {exc.__class__.__name__}"


def _workers() -> str:
    try:
        beat = cache.get(HEARTBEAT_KEY)
    except Exception:
        return "degraded: heartbeat unreadable"
    if beat is None:
        return "degraded: no worker heartbeat yet"
    age = time.time() - float(beat)
    if age > settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS:
        return f"degraded: last heartbeat {age:.0f} s ago"
    return "ok"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _database(),
        "redis": _ping(settings.REDIS_URL),
        # The broker may be a different Redis, or RabbitMQ: approvals still commit without it,
        # but nothing is dispatched until it is back.
        "broker": _broker(),
        "workers": _workers(),
    }
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503)


# Once every migration this code knows is applied it stays so (a later release's migrations are
# not in this code's graph), so the graph is loaded until then, not on every probe.
_migrated = False


def _migrations() -> str:
    global _migrated
    if _migrated:
        return "ok"
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return f"unknown: {exc.__class__.__name__}"
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _backwards in plan[:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        return f"pending: {len(plan)} ({names}{more})"
    _migrated = True
    return "ok"


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness, for a load balancer or orchestrator: 503 until the database answers and
    `migrate` has run, so that a new release takes no traffic before its schema exists.
    Redis and the workers are /healthz's business: without them the API still answers (503 for
    what needs them), and taking every web node out of service would not bring them back."""
    database = _database()
    checks = {
        "database": database,
        "migrations": _migrations() if database == "ok" else "unknown: no database",
    }
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ready" if ok else "not ready", **checks}, status=200 if ok else 503
    )
