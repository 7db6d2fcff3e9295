from __future__ import annotations

import gc
import os

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun, worker_process_init

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
