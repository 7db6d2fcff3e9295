"""The thread that renders and sends a process's live updates (approvals.live gives it the
updates, and what it renders on its own: the top bar's counts and the cards' contexts)."""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

from . import background

logger = logging.getLogger(__name__)

# The channel layer group every console's socket joins.
GROUP = "console"

_local = threading.local()


def broadcasting() -> Broadcaster | None:
    """The broadcaster whose thread this is, or None on any other thread."""
    return getattr(_local, "broadcaster", None)


class Broadcaster(background.QueueThread):
    """Renders and sends live updates on a thread of its own, in commit order.

    The request or task that committed the change answers without waiting for the render and
    the Redis round trip; the thread keeps one event loop, so the channel layer's Redis
    connection is reused instead of being set up for every message. Each update is sent as
    soon as it is rendered.

    The top bar's counts take one pass over the pending proposals, so their cost grows with
    the queue. They are read at most every LIVE_COUNTERS_SECONDS: the first update after a
    quiet spell carries fresh counts, and updates within the interval are followed, once it
    has passed, by one message with the counts as they are then (a failed read is retried at
    the next interval).

    The cards' contexts (duplicate groups, what else is open on a target) are collected for
    LIVE_CONTEXT_SECONDS from the first change and rendered together: one read for a burst,
    and none of it on the path of an action a decision just let through.
    """

    name = "live-updates"

    def __init__(
        self,
        *,
        counters: Callable[[], str],
        contexts: Callable[[list[Any]], None],
        send: Callable[[str], str],
    ) -> None:
        super().__init__()
        self._counters_html = counters  # the top bar's counts, rendered
        self._render_contexts = contexts  # renders collected context changes (via add)
        self._squeeze = send  # what a message's html becomes before it goes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = threading.Condition()
        self._started()

    def _started(self) -> None:
        self._outstanding = 0
        self._parts: list[str] = []
        self._counters_wanted = False
        self._counters_owed = False  # wanted within the interval: sent when it has passed
        self._counters_at = -math.inf
        self._contexts: list[Any] = []
        self._contexts_due = math.inf

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._ensure_started()  # before counting: a fresh thread starts from zero
        with self._idle:
            self._outstanding += 1
        self._queue.put((fn, args))

    def submit_context(self, change: Any) -> None:
        self.submit(self._collect, change)

    def _collect(self, change: Any) -> None:
        if not self._contexts:
            self._contexts_due = time.monotonic() + settings.LIVE_CONTEXT_SECONDS
        self._contexts.append(change)

    def _contexts_sent(self) -> int:
        """Render the collected contexts once they are due; returns how many changes went."""
        if not self._contexts or time.monotonic() < self._contexts_due:
            return 0
        changes, self._contexts, self._contexts_due = self._contexts, [], math.inf
        try:
            self._render_contexts(changes)
        except Exception:
            logger.warning("live contexts not sent", exc_info=True)
        return len(changes)

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything submitted so far has been sent, counts and contexts owed
        included (or the timeout passes)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout=timeout)

    def add(self, html: str, *, counters: bool) -> None:
        self._parts.append(html)
        self._counters_wanted = self._counters_wanted or counters

    def send(self, html: str) -> None:
        layer = get_channel_layer()
        if layer is None or self._loop is None:
            return
        self._loop.run_until_complete(
            layer.group_send(GROUP, {"type": "console.html", "html": self._squeeze(html)})
        )

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        _local.broadcaster = self
        while True:
            taken = 0
            owed_change = 0
            try:
                item = self._take()
                if item is not None:
                    taken = 1
                    fn, args = item
                    try:
                        fn(*args)
                    except Exception:
                        logger.warning("live update not sent", exc_info=True)
                    if fn == self._collect:
                        taken = 0  # outstanding until its context is sent
                taken += self._contexts_sent()
                owed_change = self._flush()
                if self._queue.empty():
                    connections.close_all()  # this thread's connections only
            except Exception:  # the thread must outlive any one update
                self._parts = []
                logger.warning("live update not sent", exc_info=True)
            with self._idle:
                # Owed counts count as outstanding, so that wait_idle waits for them too.
                self._outstanding += owed_change - taken
                self._idle.notify_all()

    def _take(self) -> tuple[Callable[..., None], tuple[Any, ...]] | None:
        """The next update in the queue; None when owed counts fall due first."""
        due = self._contexts_due
        if self._counters_owed:
            due = min(due, self._counters_at + settings.LIVE_COUNTERS_SECONDS)
        timeout = None if due == math.inf else max(due - time.monotonic(), 0)
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _flush(self) -> int:
        """Send what the update rendered, with the counts if due. Returns +1 when counts became
        owed, -1 when owed counts went out, else 0."""
        owed_before = self._counters_owed
        if self._counters_wanted or self._counters_owed:
            now = time.monotonic()
            self._counters_wanted = False
            self._counters_owed = True
            if now - self._counters_at >= settings.LIVE_COUNTERS_SECONDS:
                self._counters_at = now
                try:
                    self._parts.append(self._counters_html())
                    self._counters_owed = False
                except Exception:
                    logger.warning("live counters not read; trying again shortly", exc_info=True)
        parts, self._parts = self._parts, []
        if parts:
            try:
                self.send("".join(parts))
            except Exception:
                # A Redis outage must not undo or fail a committed change; browsers re-fetch
                # the queue when their socket reconnects.
                logger.warning("live update not sent", exc_info=True)
        return int(self._counters_owed) - int(owed_before)
