"""Celery tasks: thin wrappers that load an id and call a service."""

from __future__ import annotations

import time

from celery import Task, shared_task
from django.conf import settings
from django.core.cache import cache

from . import callbacks, services

HEARTBEAT_KEY = "worker-heartbeat"
CALLBACK_MAX_RETRIES = 6
CALLBACK_MAX_BACKOFF_SECONDS = 60

# A hung connector call is stopped when its lease runs out, not later: past the lease the
# sweeper hands the execution to another worker, and two live attempts must not overlap.
# (The lease starts inside the task, so the task's limit always fires first.) The soft limit
# interrupts the call a second earlier; the hard one kills the process if that is ignored.
EXECUTION_TASK_OPTIONS = {
    "time_limit": settings.EXECUTION_LEASE_SECONDS,
    "soft_time_limit": max(settings.EXECUTION_LEASE_SECONDS - 1, 1),
}


@shared_task(name="approvals.tasks.run_execution", **EXECUTION_TASK_OPTIONS)
def run_execution(execution_id: str) -> str | None:
    execution = services.execution_run(execution_id=execution_id)
    return execution.status if execution else None


@shared_task(name="approvals.tasks.run_rollback", **EXECUTION_TASK_OPTIONS)
def run_rollback(execution_id: str) -> str | None:
    execution = services.execution_run(execution_id=execution_id, rollback=True)
    return execution.status if execution else None


@shared_task(name="approvals.tasks.sweep")
def sweep() -> dict[str, int]:
    return services.sweep().__dict__


@shared_task(name="approvals.tasks.heartbeat")
def heartbeat() -> None:
    # Written by a worker when beat's tick reaches it: proves beat, broker and a worker alive.
    cache.set(HEARTBEAT_KEY, time.time(), timeout=3600)


@shared_task(name="approvals.tasks.deliver_callback", bind=True, max_retries=CALLBACK_MAX_RETRIES)
def deliver_callback(self: Task, proposal_id: str, event: str) -> int | None:
    try:
        return callbacks.deliver(proposal_id=proposal_id, event=event)
    except callbacks.DeliveryError as exc:
        # Capped backoff as a new delayed message on the callbacks' queue, so the worker is
        # free between tries (each try holds it for at most CALLBACK_DEADLINE_SECONDS).
        countdown = min(2**self.request.retries, CALLBACK_MAX_BACKOFF_SECONDS)
        raise self.retry(exc=exc, countdown=countdown) from exc
