"""Enqueueing a Celery task by its registered name.

The rule that keeps services, tasks and callbacks free of an import cycle:

    approvals/tasks.py imports the services (and callbacks) at module level: a task takes an
    id, calls a service, and retries. Services and callbacks never import approvals.tasks,
    not even inside a function; they enqueue a task by its registered name through `send`
    below, always from a `transaction.on_commit` hook (or, for the sweeper, outside any
    transaction), never inside an open one.

`send` produces the same message the task's own `apply_async` would: the route configured
for the name (CELERY_TASK_ROUTES sends deliveries to the callbacks' queue), the countdown or eta
(on RabbitMQ, whole seconds: see `whole_seconds_countdown`), the task's time limits and
ignore_result. The names below are the ones tasks.py registers under, so that a renamed task
is renamed in one place.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

RUN_EXECUTION = "approvals.tasks.run_execution"
RUN_ROLLBACK = "approvals.tasks.run_rollback"
DELIVER_CALLBACK = "approvals.tasks.deliver_callback"
SWEEP = "approvals.tasks.sweep"
HEARTBEAT = "approvals.tasks.heartbeat"
ATTENTION_CHECKS = "approvals.tasks.attention_checks"
ROLLUP_DAY = "audit.tasks.rollup_day"

# A hung connector call is stopped when its lease runs out, not later: past the lease the
# sweeper hands the execution to another worker, and two live attempts must not overlap.
# (The lease starts inside the task, so the task's limit always fires first.) The soft limit
# interrupts the call a second earlier; the hard one kills the process if that is ignored.
EXECUTION_TASK_OPTIONS: dict[str, Any] = {
    "time_limit": settings.EXECUTION_LEASE_SECONDS,
    "soft_time_limit": max(settings.EXECUTION_LEASE_SECONDS - 1, 1),
}

# What apply_async adds from the task's own attributes; a message sent by name carries them too.
_OPTIONS: dict[str, dict[str, Any]] = {
    RUN_EXECUTION: EXECUTION_TASK_OPTIONS,
    RUN_ROLLBACK: EXECUTION_TASK_OPTIONS,
}


def send(
    name: str, *args: str, countdown: float | None = None, eta: datetime | None = None
) -> None:
    """Send the task `name` with `args`, `countdown` seconds from now or at `eta`."""
    if settings.BROKER_IS_RABBITMQ:
        wait = countdown if eta is None else (eta - timezone.now()).total_seconds()
        countdown, eta = whole_seconds_countdown(wait), None
    current_app.send_task(
        name,
        args=args,
        countdown=countdown,
        eta=eta,
        ignore_result=current_app.conf.task_ignore_result,
        **_OPTIONS.get(name, {}),
    )


def whole_seconds_countdown(wait: float | None) -> int | None:
    """The countdown for RabbitMQ to deliver a task due in `wait` seconds: none once it is due.

    Celery's delayed delivery for quorum queues counts whole seconds, drops the fraction and
    refuses a countdown under one second: an approval's task sent a moment after its
    one-second undo window began, or a message come early sent again for the rest, would not
    be sent at all. The wait is rounded up instead, so that a task is never delivered before
    it is due and at most a second after. (Redis takes the eta as it is.)
    """
    if wait is None or wait <= 0:
        return None
    return math.ceil(wait)


def rollup_key(day: str) -> str:
    """Set while a rebuild of the day's report rollups is on its way (the task clears it)."""
    return f"rollup-due:{day}"


def rollup_due(*moments: datetime) -> None:
    """The report rollups of the local days these moments fall on are to be rebuilt: one task
    per day, ROLLUP_DELAY_SECONDS from the first change, however many follow meanwhile."""
    zone = ZoneInfo(settings.REPORT_TIME_ZONE)
    for day in sorted({moment.astimezone(zone).date().isoformat() for moment in moments}):
        # Kept past the delay: a task waiting behind others still covers the changes.
        if cache.add(rollup_key(day), 1, timeout=settings.ROLLUP_DELAY_SECONDS + 600):
            send(ROLLUP_DAY, day, countdown=settings.ROLLUP_DELAY_SECONDS)
