from __future__ import annotations

from celery import shared_task

from .anchor import anchor_head


@shared_task(name="audit.tasks.anchor", ignore_result=True)
def anchor() -> None:
    """Celery beat, every AUDIT_ANCHOR_SECONDS: a signed checkpoint of the head to each anchor.

    A failed delivery raises (and is logged); the next tick's checkpoint covers the same events.
    """
    anchor_head()
