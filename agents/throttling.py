"""A per-key rate limit counted in Redis, so it holds across web server processes."""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from .authentication import AgentPrincipal

WINDOW_SECONDS = 60
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _client


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request: Any, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, AgentPrincipal):
            return True
        limit = principal.key.rate_limit_per_minute or settings.API_RATE_LIMIT_PER_MINUTE
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"{settings.CHANNEL_PREFIX}:ratelimit:{principal.key.prefix}:{window}"
        # One round trip: count this request and make sure the window's key expires.
        pipe = _redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS * 2)
        count = pipe.execute()[0]
        if count > limit:
            self._wait = (window + 1) * WINDOW_SECONDS - now
            return False
        return True

    def wait(self) -> float:
        return max(1.0, self._wait)
