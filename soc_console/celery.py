from __future__ import annotations

import gc
import os

from celery import Celery, Task
from celery.concurrency.thread import TaskPool as ThreadPool
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soc_console.settings")

# Tasks log with the ids they act on, and carry the id of the request that sent them.
from soc_console import logs  # noqa: E402, F401

app = Celery("soc_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _release_database_connections(sender: Task | None = None, **kwargs: object) -> None:
    # As Django does around a request: a connection with errors, or past CONN_MAX_AGE, is
    # closed (with the pool: handed back to it), and the next query takes a sound one. A
    # task run in place with apply() shares its caller's connection and transaction.
    if sender is None or getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


# How often a thread-pool worker's event loop wakes when nothing else wakes it (see below).
THREAD_POOL_WAKE_SECONDS = 0.05


@worker_ready.connect
def _wake_a_thread_pool_worker(sender: object = None, **kwargs: object) -> None:
    """A thread-pool worker (the Procfile's `callbacks`) takes its next message only when its
    event loop wakes up after a task.

    With late acknowledgement and a prefetch of one per thread, the worker may fetch again
    when a task's thread acknowledges its message; but the thread cannot wake the loop, which
    sleeps until its next timer, up to 10 s away. The worker then took a thread's worth of
    messages every 5 to 10 s: 80 callbacks to a receiver that answered at once took minutes.
    A timer that does nothing, every 50 ms, keeps the loop's sleep short (prefork workers are
    woken by their child processes' pipes and need none).
    """
    if isinstance(getattr(sender, "pool", None), ThreadPool):
        sender.timer.call_repeatedly(THREAD_POOL_WAKE_SECONDS, _nothing)  # type: ignore[attr-defined]


def _nothing() -> None:
    pass


@worker_process_init.connect
def _freeze_start_up_objects(**kwargs: object) -> None:
    freeze_start_up_objects()


def freeze_start_up_objects() -> None:
    """Leave what start-up loaded (Django, the apps, the URLconf) out of garbage collection.

    Those hundred thousand objects live as long as the process; a full collection that walks
    them stalls whatever task or request is running for tens of milliseconds, and a full
    collection comes round every few thousand tasks.
    """
    gc.collect()  # start-up's own garbage is freed, not kept forever
    gc.freeze()
