"""Celery tasks: thin wrappers that load an id and call a service."""

from __future__ import annotations

import random
import time

from celery import Task, shared_task
from django.core.cache import cache

from . import callbacks, enqueue, services
from .enqueue import EXECUTION_TASK_OPTIONS

HEARTBEAT_KEY = "worker-heartbeat"
CALLBACK_MAX_RETRIES = 6


@shared_task(name=enqueue.RUN_EXECUTION, **EXECUTION_TASK_OPTIONS)
def run_execution(execution_id: str) -> str | None:
    execution = services.execution_run(execution_id=execution_id)
    return execution.status if execution else None


@shared_task(name=enqueue.RUN_ROLLBACK, **EXECUTION_TASK_OPTIONS)
def run_rollback(execution_id: str) -> str | None:
    execution = services.execution_run(execution_id=execution_id, rollback=True)
    return execution.status if execution else None


@shared_task(name=enqueue.SWEEP)
def sweep() -> dict[str, int]:
    return services.sweep().__dict__


@shared_task(name=enqueue.ATTENTION_CHECKS)
def attention_checks() -> int:
    return services.attention_checks_insert()


@shared_task(name=enqueue.HEARTBEAT)
def heartbeat() -> None:
    # Written by a worker when beat's tick reaches it: proves beat, broker and a worker alive.
    cache.set(HEARTBEAT_KEY, time.time(), timeout=3600)


@shared_task(name=enqueue.DELIVER_CALLBACK, bind=True, max_retries=CALLBACK_MAX_RETRIES)
def deliver_callback(self: Task, proposal_id: str, event: str) -> int | None:
    # Capped backoff as a new delayed message on the callbacks' queue, so the worker is free
    # between tries (each try holds it for at most CALLBACK_DEADLINE_SECONDS).
    backoff = min(2**self.request.retries, callbacks.LONGEST_WAIT_SECONDS)
    try:
        return callbacks.deliver(proposal_id=proposal_id, event=event)
    except callbacks.DeliveryError as exc:
        raise self.retry(exc=exc, countdown=backoff) from exc
    except callbacks.Paused as exc:
        # A turn spent waiting for the agent's paused receiver counts as a try and waits at
        # least the backoff, so a delivery is given up no sooner than without the pause; the
        # jitter spreads the waiting deliveries over the probe's answer.
        countdown = max(backoff, exc.seconds) + random.uniform(0, 1)  # noqa: S311 (jitter)
        raise self.retry(exc=exc, countdown=countdown) from exc
