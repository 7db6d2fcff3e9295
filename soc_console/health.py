"""/healthz: the database, Redis, the Celery broker and the workers' heartbeat."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


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


def _workers() -> str:
    from approvals.tasks import HEARTBEAT_KEY

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
        # The broker may be a different Redis: approvals still commit without it, but nothing
        # is dispatched until it is back.
        "broker": _ping(settings.CELERY_BROKER_URL),
        "workers": _workers(),
    }
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503)
