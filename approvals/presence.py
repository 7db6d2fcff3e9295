"""How many consoles (websockets) are open, over every web process on every node.

Each server process counts its own consoles and keeps its count in one Redis hash, under a
field of its own with an expiry time; /metrics adds up the fields that have not expired. A
process refreshes its field whenever the count changes and every REFRESH_SECONDS, so a process
that was killed stops counting within TTL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

import redis
import redis.asyncio
from django.conf import settings

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 10.0
TTL_SECONDS = 30.0


def key() -> str:
    return f"{settings.CHANNEL_PREFIX}:consoles"


class _Presence:
    """This process's count, written by a task on its event loop (started on first use)."""

    def __init__(self) -> None:
        self.count = 0
        self.field = f"{socket.gethostname()}:{os.getpid()}"
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def opened(self) -> None:
        self.count += 1
        self._kick()

    def closed(self) -> None:
        self.count = max(self.count - 1, 0)
        self._kick()

    def _kick(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # An event belongs to one loop: a new loop (a restarted server, a test) gets its own.
            self._changed = asyncio.Event()
            self._task = loop.create_task(self._report(self._changed))
        self._changed.set()

    async def _report(self, changed: asyncio.Event) -> None:
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            while True:
                changed.clear()
                try:
                    await client.hset(
                        key(), self.field, f"{self.count} {time.time() + TTL_SECONDS:.0f}"
                    )
                except (redis.RedisError, OSError):
                    _raise_if_cancelled()  # the loop is closing (the client may call it an error)
                    # Redis away: the count is written again at the next change or refresh.
                    logger.warning("console count not recorded", exc_info=True)
                _raise_if_cancelled()
                # Not asyncio.wait_for, for the same reason (see _raise_if_cancelled).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REFRESH_SECONDS):
                        await changed.wait()
        finally:
            await client.aclose()


def _raise_if_cancelled() -> None:
    """Go on cancelling a task that was cancelled while a call swallowed the cancellation.

    On Python 3.11 asyncio.wait_for returns normally when the cancellation comes as the awaited
    call completes, and redis-py's send waits with it: a console closing as its server shuts
    down then left this task writing and waiting on, and the loop never finished closing. The
    task still counts the request (Task.cancelling)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_presence = _Presence()
opened = _presence.opened
closed = _presence.closed


def connected() -> int:
    """Open consoles over every live process; fields of processes gone quiet are removed."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        now = time.time()
        total, gone = 0, []
        for field, value in client.hgetall(key()).items():
            count, _, expires = value.decode().partition(" ")
            if float(expires) >= now:
                total += int(count)
            elif float(expires) < now - TTL_SECONDS:
                # Long past its refresh: the process is gone. (One just expired may be a
                # process about to refresh it; it is left alone.)
                gone.append(field)
        if gone:
            client.hdel(key(), *gone)
        return total
    finally:
        client.close()
