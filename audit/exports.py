from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from .models import AuditEvent


def jsonl_rows(events: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    """Events as a SIEM reads them: one JSON object per line, with the chain hashes."""
    for event in events.iterator(chunk_size=2000):
        yield {
            "seq": event.seq,
            "at": event.at.isoformat(),
            "actor_type": event.actor_type,
            "actor": event.actor,
            "event_type": event.event_type,
            "proposal_id": str(event.proposal_id) if event.proposal_id else None,
            "data": event.data,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }
