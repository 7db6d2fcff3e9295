from __future__ import annotations

from datetime import date, timedelta

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from approvals.enqueue import rollup_key

from .anchor import anchor_head
from .reports import rollup


@shared_task(name="audit.tasks.anchor", ignore_result=True)
def anchor() -> None:
    """Celery beat, every AUDIT_ANCHOR_SECONDS: a signed checkpoint of the head to each anchor.

    A failed delivery raises (and is logged); the next tick's checkpoint covers the same events.
    """
    anchor_head()


@shared_task(name="audit.tasks.rollup_day", ignore_result=True)
def rollup_day(day: str) -> None:
    """Rebuild one local day's report rollups, sent ROLLUP_DELAY_SECONDS after a change to one
    of its proposals (approvals.enqueue.rollup_due)."""
    # Cleared before reading: a change committed from now on sends a rebuild of its own.
    cache.delete(rollup_key(day))
    rollup.rollup_day(date.fromisoformat(day))


@shared_task(name="audit.tasks.rollup_recent", ignore_result=True)
def rollup_recent() -> None:
    """Celery beat, every ROLLUP_SWEEP_SECONDS: today's and yesterday's rollups, whatever a
    lost message or a Redis outage kept from being rebuilt."""
    today = rollup.local_day(timezone.now())
    for day in (today - timedelta(days=1), today):
        rollup.rollup_day(day)
