"""A per-key rate limit counted in Redis, so it holds across web server processes.

The limit is a sliding minute: a key's call is admitted while fewer than its limit were admitted
in the 60 seconds before it, so no minute-long span ever holds more (a count per calendar minute
let twice the limit through around a minute's turn). Each key's admitted calls are a sorted set
of their times; one Lua script drops those older than the window and admits, or answers how
long until the oldest leaves it, in one round trip. Refused calls are not recorded: an agent that
keeps calling while refused is admitted again as soon as its oldest admitted call is a minute
old, and its Retry-After says when that is.

When Redis does not answer, agents' calls go on: each process counts on its own, the same way
and with the same limit, until Redis is back, and says so in its log once per outage.
"""

from __future__ import annotations

import bisect
import logging
import math
import secrets
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

# KEYS[1]: the key's admitted calls; ARGV: now, the window (seconds), the limit, a member name
# for this call. Answers "0" when admitted, else the seconds until a call would be.
SLIDING_MINUTE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
return tostring(tonumber(oldest) + window - now)
"""

logger = logging.getLogger(__name__)
_client: redis.Redis | None = None
_script: Any = None


def _sliding_minute() -> Any:
    global _client, _script
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        _script = _client.register_script(SLIDING_MINUTE)
    return _script


def wait_in_window(admitted: list[float], now: float, limit: int) -> float:
    """The sliding minute over one key's admitted call times (sorted): 0.0 when a call at
    `now` is admitted (and recorded), else the seconds until one would be. What the Lua script
    does in Redis, for the count each process keeps while Redis is down."""
    del admitted[: bisect.bisect_right(admitted, now - WINDOW_SECONDS)]
    if len(admitted) < limit:
        admitted.append(now)
        return 0.0
    return admitted[0] + WINDOW_SECONDS - now


class _LocalCounter:
    """This process's own sliding minutes, used while Redis is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._admitted: dict[str, list[float]] = {}
        self.down_until = 0.0  # monotonic time before which Redis is not asked again
        self.outage = False

    def wait(self, key: str, now: float, limit: int) -> float:
        with self._lock:
            if len(self._admitted) > 10_000:  # keys of agents gone quiet: nothing to keep
                cutoff = now - WINDOW_SECONDS
                self._admitted = {k: v for k, v in self._admitted.items() if v and v[-1] > cutoff}
            return wait_in_window(self._admitted.setdefault(key, []), now, limit)

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
        key = f"{settings.CHANNEL_PREFIX}:ratelimit:{principal.key.prefix}"
        self._wait = self._wait_for(key, time.time(), limit)
        return self._wait <= 0

    @staticmethod
    def _wait_for(key: str, now: float, limit: int) -> float:
        if time.monotonic() >= _local.down_until:
            try:
                member = f"{now:.6f}:{secrets.token_hex(4)}"  # two calls of one instant
                answer = _sliding_minute()(
                    keys=[key], args=[repr(now), WINDOW_SECONDS, limit, member]
                )
                wait = float(answer)
            except redis.RedisError as error:
                _local.redis_failed(error)
            else:
                _local.redis_answered()
                return wait
        return _local.wait(key, now, limit)

    def wait(self) -> float:
        # Whole seconds (Retry-After), never 0: the oldest call leaves the window within it.
        return float(max(1, math.ceil(self._wait)))
