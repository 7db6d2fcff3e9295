"""Threads of this process that do work after a service has committed, off its path: a queue
worked through in order, and announcements sent only if they are still wanted when due.

approvals.live sends its updates through them; nothing here renders or reads anything.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)


class QueueThread:
    """A daemon thread of this process that works through a queue, started on first use.

    A Celery worker forks after import: each child starts its own thread, with its own queue
    and its own state (see _started).
    """

    name = "queue"

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._started()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _put(self, item: Any) -> None:
        self._ensure_started()
        self._queue.put(item)

    def _started(self) -> None:
        """Reset per-thread state: a new process (a fork) or a thread that died starts clean."""

    def _run(self) -> None:
        raise NotImplementedError


class Announcement:
    """A live update worth sending only if what it shows lasts: one cancelled before it is due
    is never sent."""

    def __init__(self, fn: Callable[..., None], args: tuple[Any, ...], delay: float) -> None:
        self._fn = fn
        self._args = args
        self._due = time.monotonic() + delay
        self._lock = threading.Lock()
        self._woken = threading.Event()
        self._cancelled = False

    def cancel(self) -> None:
        """Never send it; if it is being sent right now, return once it has gone, so that
        whatever the caller sends next arrives after it."""
        self._woken.set()
        with self._lock:
            self._cancelled = True

    def _run(self) -> None:
        self._woken.wait(max(self._due - time.monotonic(), 0))
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            try:
                self._fn(*self._args)
            except Exception:  # a live update must never fail the work it describes
                logger.warning("live update not sent", exc_info=True)
            finally:
                connections.close_all()  # this thread's connections only


class _Announcer(QueueThread):
    """One thread per process that sends announcements when they fall due.

    A thread started for each one would cost its start-up on the path of every execution;
    this one waits on a queue.
    """

    name = "announcer"

    def submit(self, announcement: Announcement) -> None:
        self._put(announcement)

    def _run(self) -> None:
        while True:
            self._queue.get()._run()


_announcer = _Announcer()


def announce_later(delay: float, fn: Callable[..., None], *args: Any) -> Announcement:
    """Run `fn(*args)` (a live update) after `delay` seconds unless it is cancelled first."""
    announcement = Announcement(fn, args, delay)
    _announcer.submit(announcement)
    return announcement
