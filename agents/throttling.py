"""A per-key rate limit counted in Redis, so it holds across web server processes."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from .authentication import AgentPrincipal

WINDOW_SECONDS = 60


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
        key = f"ratelimit:{principal.key.prefix}:{window}"
        cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
        count = cache.incr(key)
        if count > limit:
            self._wait = (window + 1) * WINDOW_SECONDS - now
            return False
        return True

    def wait(self) -> float:
        return max(1.0, self._wait)
