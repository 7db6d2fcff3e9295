"""Appending to and verifying the hash-chained audit log.

This module knows nothing of agents or proposals: services in both apps call `record` inside
their own transaction, and the event commits or rolls back with the change it describes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .models import AuditEvent, AuditHead, VerificationRun

GENESIS_HASH = "0" * 64


def canonical(
    *,
    seq: int,
    at: datetime,
    actor_type: str,
    actor: str,
    event_type: str,
    proposal_id: uuid.UUID | str | None,
    data: dict[str, Any],
) -> bytes:
    body = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_type": actor_type,
        "actor": actor,
        "event_type": event_type,
        # SQLite returns UUIDs as bare hex; hash the canonical hyphenated form everywhere.
        "proposal_id": str(uuid.UUID(str(proposal_id))) if proposal_id else None,
        "data": data,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + content).hexdigest()


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so that what is hashed is exactly what the JSON column returns.
    return json.loads(json.dumps(data, default=str))


def record(
    *,
    event_type: str,
    actor: str,
    actor_type: str = "user",
    proposal_id: uuid.UUID | str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events are recorded inside the transaction they describe")
    payload = _jsonable(data or {})
    head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
    at = timezone.now()
    seq = head.seq + 1
    digest = chain_hash(
        head.hash,
        canonical(
            seq=seq,
            at=at,
            actor_type=actor_type,
            actor=actor,
            event_type=event_type,
            proposal_id=proposal_id,
            data=payload,
        ),
    )
    event = AuditEvent.objects.create(
        seq=seq,
        at=at,
        actor_type=actor_type,
        actor=actor,
        event_type=event_type,
        proposal_id=proposal_id,
        data=payload,
        prev_hash=head.hash,
        hash=digest,
    )
    AuditHead.objects.filter(id=1).update(seq=seq, hash=digest)
    return event


@dataclass(frozen=True)
class Verification:
    ok: bool
    events: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def verify_chain(*, batch_size: int = 5000) -> Verification:
    """Walk the chain in order and recompute every hash.

    Reports the first event that was modified (its hash no longer matches its content), removed
    (a gap in seq or a prev_hash that does not match its predecessor) or reordered.
    """
    expected_prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    columns = "seq, at, actor_type, actor, event_type, proposal_id, data, prev_hash, hash"
    table = AuditEvent._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {table} ORDER BY seq")  # noqa: S608
        while True:
            rows = cursor.fetchmany(batch_size)
            if not rows:
                break
            for seq, at, actor_type, actor, event_type, proposal_id, data, prev, digest in rows:
                if isinstance(data, str):
                    data = json.loads(data)
                if isinstance(at, str):
                    at = datetime.fromisoformat(at)
                if at.tzinfo is None:
                    at = at.replace(tzinfo=UTC)
                if seq != expected_seq:
                    kind = "removed" if seq > expected_seq else "reordered or duplicated"
                    return Verification(
                        False,
                        count,
                        expected_prev,
                        expected_seq,
                        f"event #{expected_seq} is missing: the chain jumps to #{seq} ({kind})",
                    )
                if prev != expected_prev:
                    return Verification(
                        False,
                        count,
                        expected_prev,
                        seq,
                        f"event #{seq} does not follow #{seq - 1}: its prev_hash does not match "
                        "(an earlier event was removed, reordered or rewritten)",
                    )
                content = canonical(
                    seq=seq,
                    at=at,
                    actor_type=actor_type,
                    actor=actor,
                    event_type=event_type,
                    proposal_id=proposal_id,
                    data=data,
                )
                if chain_hash(prev, content) != digest:
                    return Verification(
                        False,
                        count,
                        expected_prev,
                        seq,
                        f"event #{seq} ({event_type}) was modified: its content no longer "
                        "matches its hash",
                    )
                expected_prev = digest
                expected_seq += 1
                count += 1
    head = AuditHead.objects.filter(id=1).first()
    if head is not None and head.seq != count:
        return Verification(
            False,
            count,
            expected_prev,
            count + 1,
            f"the chain ends at #{count} but its head says #{head.seq}: events were removed "
            "from the end",
        )
    return Verification(True, count, expected_prev)


def verify_and_record() -> Verification:
    started = timezone.now()
    result = verify_chain()
    VerificationRun.objects.create(
        at=started,
        ok=result.ok,
        events=result.events,
        head_hash=result.head_hash,
        first_bad_seq=result.first_bad_seq,
        problem=result.problem,
        seconds=(timezone.now() - started).total_seconds(),
    )
    return result
