"""Appending to the hash-chained audit log (audit/verify.py checks it).

This module knows nothing of agents or proposals: services in both apps call `record` inside
their own transaction, and the event commits or rolls back with the change it describes.

Each event's hash is HMAC-SHA256 under AUDIT_KEY over the previous event's hash and the
event's canonical content (`audit.canonical`), computed here and only here: the key never
reaches the database, so a role that can write the table cannot re-hash what it rewrote.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import sql
from .canonical import canonical_data, encode, keyed_hash, quote
from .models import AuditEvent

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
    """The bytes an event's hash covers (with the previous event's hash in front)."""
    return event_content(
        seq=seq,
        at=at.astimezone(UTC).isoformat(timespec="microseconds"),
        actor_type=canonical_data(actor_type, where="event.actor_type"),
        actor=canonical_data(actor, where="event.actor"),
        event_type=canonical_data(event_type, where="event.event_type"),
        # SQLite returns UUIDs as bare hex; hash the canonical hyphenated form everywhere.
        proposal_id=str(uuid.UUID(str(proposal_id))) if proposal_id else None,
        data=canonical_data(data, where="event.data"),
    )


def event_content(
    *,
    seq: int,
    at: str,
    actor_type: str,
    actor: str,
    event_type: str,
    proposal_id: str | None,
    data: Any,
) -> bytes:
    """The one canonical JSON of an event, for appending and verifying alike: `at` as UTC ISO
    text with microseconds, the proposal id hyphenated, the data already canonical.

    It is the encoder's text of the event as a dict, keys sorted (a property test holds the
    two equal), written out in that order from its parts: verification builds it for every
    event of the chain, and sorting the seven keys each time cost a fifth of the walk."""
    pid = "null" if proposal_id is None else quote(proposal_id)
    return (
        f'{{"actor":{_quoted(actor)},"actor_type":{_quoted(actor_type)},"at":{quote(at)},'
        f'"data":{encode(data)},"event_type":{_quoted(event_type)},"proposal_id":{pid},'
        f'"seq":{int(seq)}}}'
    ).encode()


# Actors, their types and event types repeat endlessly along a chain: each quoted once.
_quoted = functools.lru_cache(maxsize=4096)(quote)


def event_hash(prev_hash: str, content: bytes) -> str:
    """The one hash of the chain: appending and verifying both use it."""
    return keyed_hash()(prev_hash.encode() + content)


@dataclass(frozen=True)
class PendingEvent:
    """An event before it takes its place in the chain: what it says, not where it stands.

    `record` appends one, now; `record_many` appends backfilled history, in chain order.
    """

    at: datetime
    actor_type: str
    actor: str
    event_type: str
    proposal_id: uuid.UUID | str | None
    data: dict[str, Any]

    def content(self, seq: int) -> bytes:
        """The bytes its hash covers, as the event at position `seq`."""
        return canonical(seq=seq, **vars(self))

    def stored(self, *, seq: int, prev_hash: str, digest: str) -> AuditEvent:
        return AuditEvent(seq=seq, prev_hash=prev_hash, hash=digest, **vars(self))

    def row(self, *, seq: int, prev_hash: str, digest: str, encoded: bool) -> tuple[Any, ...]:
        """Its values in EVENT_COLUMNS order, the data as canonical JSON text when `encoded`
        (for SQL and COPY) or as the canonical object (for the ORM)."""
        return (
            seq,
            self.at,
            self.actor_type,
            self.actor,
            self.event_type,
            self.proposal_id,
            encode(self.data) if encoded else self.data,
            prev_hash,
            digest,
        )


def _locked_head(db: Any) -> tuple[int, str]:
    """The chain's last event (seq, hash), holding the right to append after it until commit.

    On PostgreSQL, audit_chain_head() (migration 0004) takes a transaction-level advisory
    lock and then reads the last event on a fresh snapshot, so it sees what the previous
    holder committed. The head is the last event itself: there is no separate head row that
    a role allowed to append could move back. On SQLite, IMMEDIATE transactions (settings)
    already hold the whole database's write lock.
    """
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql.CHAIN_HEAD)
            seq, digest = cursor.fetchone()
            return int(seq), digest
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return last if last is not None else (0, GENESIS_HASH)


def record(
    *,
    event_type: str,
    actor: str,
    actor_type: str = "user",
    proposal_id: uuid.UUID | str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction.

    Its time is when the service recorded it; its place is the order in which transactions
    took the head, so under contention times can run a few milliseconds backwards along seq.
    Data the log cannot store exactly as it hashes it raises NotCanonical, and nothing is
    written.
    """
    db = transaction.get_connection()
    if not db.in_atomic_block:
        raise RuntimeError("audit events are recorded inside the transaction they describe")
    pending = PendingEvent(
        at=timezone.now(),
        actor_type=actor_type,
        actor=actor,
        event_type=event_type,
        proposal_id=proposal_id,
        data=canonical_data(data or {}),
    )
    head_seq, head_hash = _locked_head(db)
    seq = head_seq + 1
    digest = event_hash(head_hash, pending.content(seq))
    event = pending.stored(seq=seq, prev_hash=head_hash, digest=digest)
    if db.vendor != "postgresql":
        event.save(force_insert=True)
        return event
    # One plain statement: this runs in every service transaction.
    with db.cursor() as cursor:
        cursor.execute(
            sql.APPEND_EVENT,
            pending.row(seq=seq, prev_hash=head_hash, digest=digest, encoded=True),
        )
        event.pk = cursor.fetchone()[0]
    event._state.adding = False
    return event


EVENT_COLUMNS = sql.EVENT_COLUMNS

RowWriter = Callable[[str, tuple[str, ...], list[tuple[Any, ...]]], None]


def record_many(events: Iterable[PendingEvent], *, write: RowWriter | None = None) -> int:
    """Append many events at once, hashed exactly as `record` hashes one.

    The caller's transaction holds the head for the whole batch, so live appends wait and the
    chain stays linear. `write` receives (table, columns, rows) and may use COPY (the data
    column then comes as its canonical JSON text); the default is a plain bulk insert.
    Returns the number of events appended.
    """
    db = transaction.get_connection()
    if not db.in_atomic_block:
        raise RuntimeError("audit events are recorded inside the transaction they describe")
    seq, prev = _locked_head(db)
    rows: list[tuple[Any, ...]] = []
    digest_of = keyed_hash()
    for event in events:
        seq += 1
        pending = replace(event, data=canonical_data(event.data))
        digest = digest_of(prev.encode() + pending.content(seq))
        rows.append(pending.row(seq=seq, prev_hash=prev, digest=digest, encoded=write is not None))
        prev = digest
    if not rows:
        return 0
    if write is None:
        AuditEvent.objects.bulk_create(
            (AuditEvent(**dict(zip(EVENT_COLUMNS, row, strict=True))) for row in rows),
            batch_size=2000,
        )
    else:
        write(AuditEvent._meta.db_table, EVENT_COLUMNS, rows)
    return len(rows)
