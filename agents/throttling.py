"""A per-key rate limit counted in Redis, so it holds across web server processes.

When Redis does not answer, agents' calls go on: each process counts on its own (the same limit
per process) until Redis is back, and says so in its log once per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from .authentication import AgentPrincipal

WINDOW_SECONDS = 60
# After a failure Redis is not asked again for this long: each request would otherwise wait
# for its own failed connection.
REDIS_RETRY_SECONDS = 1.0

logger = logging.getLogger(__name__)
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5
        )
    return _client


class _LocalCounter:
    """This process's own fixed-window counts, used while Redis is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._window = -1
        self.down_until = 0.0  # monotonic time before which Redis is not asked again
        self.outage = False

    def count(self, key: str, window: int) -> int:
        with self._lock:
            if window != self._window:  # a new minute: last minute's counts go
                self._counts.clear()
                self._window = window
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def redis_failed(self, error: redis.RedisError) -> None:
        with self._lock:
            self.down_until = time.monotonic() + REDIS_RETRY_SECONDS
            if self.outage:
                return
            self.outage = True
        logger.warning(
            "rate limit: Redis is not answering (%r); each web process counts on its own "
            "until it is back",
            error,
        )

    def redis_answered(self) -> None:
        if not self.outage:
            return
        with self._lock:
            was_down, self.outage = self.outage, False
        if was_down:
            logger.warning("rate limit: Redis answers again; counting in Redis")


_local = _LocalCounter()


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
        count = self._count(key, window)
        if count > limit:
            self._wait = (window + 1) * WINDOW_SECONDS - now
            return False
        return True

    @staticmethod
    def _count(key: str, window: int) -> int:
        if time.monotonic() >= _local.down_until:
            try:
                # One round trip: count this request and make sure the window's key expires.
                pipe = _redis().pipeline(transaction=False)
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS * 2)
                count = int(pipe.execute()[0])
            except redis.RedisError as error:
                _local.redis_failed(error)
            else:
                _local.redis_answered()
                return count
        return _local.count(key, window)

    def wait(self) -> float:
        return max(1.0, self._wait)
