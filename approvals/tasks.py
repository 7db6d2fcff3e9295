"""Celery tasks: thin wrappers that load an id and call a service."""

from __future__ import annotations

import time

from celery import shared_task
from django.core.cache import cache

from . import callbacks, services

HEARTBEAT_KEY = "worker-heartbeat"


@shared_task(name="approvals.tasks.run_execution")
def run_execution(execution_id: str) -> str | None:
    execution = services.execution_run(execution_id=execution_id)
    return execution.status if execution else None


@shared_task(name="approvals.tasks.run_rollback")
def run_rollback(execution_id: str) -> str | None:
    execution = services.execution_run(execution_id=execution_id, rollback=True)
    return execution.status if execution else None


@shared_task(name="approvals.tasks.sweep")
def sweep() -> dict[str, int]:
    return services.sweep().__dict__


@shared_task(name="approvals.tasks.heartbeat")
def heartbeat() -> None:
    cache.set(HEARTBEAT_KEY, time.time(), timeout=3600)


@shared_task(name="approvals.tasks.deliver_callback", bind=True, max_retries=6)
def deliver_callback(self, proposal_id: str, event: str) -> int | None:  # noqa: ANN001
    try:
        return callbacks.deliver(proposal_id=proposal_id, event=event)
    except callbacks.DeliveryError as exc:
        # Capped backoff; the worker is free between tries.
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
