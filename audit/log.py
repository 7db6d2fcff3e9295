"""Appending to and verifying the hash-chained audit log.

This module knows nothing of agents or proposals: services in both apps call `record` inside
their own transaction, and the event commits or rolls back with the change it describes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
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


# Every service transaction appends one event, so on PostgreSQL the append is one plain
# statement: lock the head, insert the event chained to it, move the head. The hash is taken
# there too, over the same bytes `chain_hash` hashes: the event's canonical content ends with
# its sequence number (`"seq":N}`, the last key in sorted order), so this side sends the rest
# and the database, which alone knows N and the previous hash under the lock, finishes it.
_PG_APPEND = """
WITH head AS (
    SELECT seq + 1 AS seq, hash FROM audit_audithead WHERE id = 1 FOR UPDATE
), event AS (
    INSERT INTO audit_auditevent
        (seq, at, actor_type, actor, event_type, proposal_id, data, prev_hash, hash)
    SELECT head.seq, %s, %s, %s, %s, %s, %s::jsonb, head.hash,
           encode(sha256(convert_to(head.hash, 'UTF8') || %s::bytea
                         || convert_to(head.seq::text || '}', 'UTF8')), 'hex')
      FROM head
    RETURNING id, seq, prev_hash, hash
)
UPDATE audit_audithead AS moved SET seq = event.seq, hash = event.hash
  FROM event
 WHERE moved.id = 1
RETURNING event.id, event.seq, event.prev_hash, event.hash
"""
_SEQ_TAIL = b'"seq":0}'


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


def _locked_head() -> tuple[int, str]:
    head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
    return head.seq, head.hash


def _append_pg(connection: Any, pending: PendingEvent) -> AuditEvent | None:
    """Append in one statement; None when there is no head row yet (a fresh database)."""
    content = pending.content(0)
    if not content.endswith(_SEQ_TAIL):  # the layout the statement relies on
        raise RuntimeError("the canonical form no longer ends with the sequence number")
    with connection.cursor() as cursor:
        cursor.execute(
            _PG_APPEND,
            [
                pending.at,
                pending.actor_type,
                pending.actor,
                pending.event_type,
                pending.proposal_id,
                json.dumps(pending.data),
                content[: -len(_SEQ_TAIL)] + b'"seq":',
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    pk, seq, prev_hash, digest = row
    event = pending.stored(seq=seq, prev_hash=prev_hash, digest=digest)
    event.pk = pk
    event._state.adding = False
    return event


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
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("audit events are recorded inside the transaction they describe")
    pending = PendingEvent(
        at=timezone.now(),
        actor_type=actor_type,
        actor=actor,
        event_type=event_type,
        proposal_id=proposal_id,
        data=_jsonable(data or {}),
    )
    if connection.vendor == "postgresql":
        event = _append_pg(connection, pending)
        if event is not None:
            return event
    head_seq, head_hash = _locked_head()
    seq = head_seq + 1
    digest = chain_hash(head_hash, pending.content(seq))
    event = pending.stored(seq=seq, prev_hash=head_hash, digest=digest)
    event.save(force_insert=True)
    AuditHead.objects.filter(id=1).update(seq=seq, hash=digest)
    return event


EVENT_COLUMNS = (
    "seq",
    "at",
    "actor_type",
    "actor",
    "event_type",
    "proposal_id",
    "data",
    "prev_hash",
    "hash",
)

RowWriter = Callable[[str, tuple[str, ...], list[tuple[Any, ...]]], None]


def record_many(events: Iterable[PendingEvent], *, write: RowWriter | None = None) -> int:
    """Append many events at once, hashed exactly as `record` hashes one.

    The caller's transaction holds the head lock for the whole batch, so live appends wait
    and the chain stays linear. `write` receives (table, columns, rows) and may use COPY; the
    default is a plain bulk insert. Returns the number of events appended.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events are recorded inside the transaction they describe")
    head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
    seq, prev = head.seq, head.hash
    rows: list[tuple[Any, ...]] = []
    for event in events:
        seq += 1
        # The JSON text is what the column stores and what verification re-reads.
        text = json.dumps(event.data, default=str)
        payload = json.loads(text)
        digest = chain_hash(prev, replace(event, data=payload).content(seq))
        rows.append(
            (
                seq,
                event.at,
                event.actor_type,
                event.actor,
                event.event_type,
                event.proposal_id,
                payload if write is None else text,
                prev,
                digest,
            )
        )
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
    AuditHead.objects.filter(id=1).update(seq=seq, hash=prev)
    return len(rows)


@dataclass(frozen=True)
class Verification:
    ok: bool
    events: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def _rows_generic(batch_size: int) -> Iterator[tuple[int, bytes, str, str, str]]:
    """(seq, canonical content, event_type, prev_hash, hash) for any database backend."""
    columns = "seq, at, actor_type, actor, event_type, proposal_id, data, prev_hash, hash"
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {table} ORDER BY seq")  # noqa: S608
        while True:
            rows = cursor.fetchmany(batch_size)
            if not rows:
                return
            for seq, at, actor_type, actor, event_type, proposal_id, data, prev, digest in rows:
                if isinstance(data, str):
                    data = json.loads(data)
                if isinstance(at, str):
                    at = datetime.fromisoformat(at)
                if at.tzinfo is None:
                    at = at.replace(tzinfo=UTC)
                content = canonical(
                    seq=seq,
                    at=at,
                    actor_type=actor_type,
                    actor=actor,
                    event_type=event_type,
                    proposal_id=proposal_id,
                    data=data,
                )
                yield seq, content, event_type, prev, digest


# PostgreSQL streams the table with COPY, the cheapest way out of the server; timestamps come
# as ISO text in UTC (set for the transaction) and are reshaped here, which costs the server
# less than formatting them. The text built from each line is byte-for-byte what `canonical`
# produces (keys in sorted order, compact separators), so the hashes compare exactly.
_PG_COPY_SQL = """
COPY (SELECT seq, at, actor_type, actor, event_type, proposal_id, data, prev_hash, hash
      FROM audit_auditevent ORDER BY seq) TO STDOUT
"""
_COPY_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_COPY_ESCAPE_RE = re.compile(rb"\\(.)")
_NULL = b"\\N"
# Chains larger than this are checked by worker processes, each over its own connection.
PARALLEL_FROM = 200_000
RANGE_EVENTS = 100_000  # events per worker task: about 35 MB of COPY text
BLOCK_BYTES = 4 << 20


def _unescape(field: bytes) -> bytes:
    return _COPY_ESCAPE_RE.sub(lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), field)


def _iso_utc(text: str) -> str:
    """'2026-11-26 08:15:34.1234+00' as isoformat(timespec="microseconds") writes it."""
    if len(text) >= 22 and text.endswith("+00") and text[10] == " ":
        fraction = text[20:-3] if text[19] == "." else ""
        return f"{text[:10]}T{text[11:19]}.{fraction.ljust(6, '0')}+00:00"
    parsed = datetime.fromisoformat(text if not text.endswith("+00") else text + ":00")
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


def _rows_from_copy(block: bytes) -> Iterator[tuple[int, bytes, str, str, str]]:
    # One encoder for the whole block: json.dumps with options builds a new one per call.
    encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
    loads = json.loads
    # Actors and event types repeat endlessly: quote each distinct one once.
    quoted: dict[bytes, str] = {}
    for line in block.split(b"\n"):
        if not line:
            continue
        fields = line.split(b"\t")
        if b"\\" in line:
            fields = [f if f == _NULL else _unescape(f) for f in fields]
        seq_raw, at, actor_type, actor, event_type, proposal_id, data, prev, digest = fields
        names = []
        for raw in (actor, actor_type, event_type):
            text = quoted.get(raw)
            if text is None:
                text = quoted[raw] = encode(raw.decode())
            names.append(text)
        pid = "null" if proposal_id == _NULL else f'"{proposal_id.decode()}"'
        content = (
            f'{{"actor":{names[0]},"actor_type":{names[1]},"at":"{_iso_utc(at.decode())}",'
            f'"data":{encode(loads(data))},"event_type":{names[2]},'
            f'"proposal_id":{pid},"seq":{int(seq_raw)}}}'
        ).encode()
        yield int(seq_raw), content, event_type.decode(), prev.decode(), digest.decode()


@dataclass(frozen=True)
class _Checked:
    """The result of checking a run of consecutive events."""

    first_seq: int | None
    first_prev: str
    last_seq: int
    last_hash: str
    count: int  # events that passed, up to the first failure
    failure: tuple[int, str, str | None] | None = None  # seq, problem, expected prev_hash


def _check(
    rows: Iterable[tuple[int, bytes, str, str, str]],
    expected_seq: int | None,
    expected_prev: str | None,
) -> _Checked:
    """Check events in order. With no expectations (a block read in parallel) the first event's
    link to its predecessor is left to the caller, who knows the previous block's end."""
    sha256 = hashlib.sha256
    first_seq: int | None = None
    first_prev = ""
    count = 0
    for seq, content, event_type, prev, digest in rows:
        if first_seq is None:
            first_seq, first_prev = seq, prev
        if expected_seq is not None and seq != expected_seq:
            kind = "removed" if seq > expected_seq else "reordered or duplicated"
            problem = f"event #{expected_seq} is missing: the chain jumps to #{seq} ({kind})"
            return _Checked(
                first_seq, first_prev, seq, "", count, (expected_seq, problem, expected_prev)
            )
        if expected_prev is not None and prev != expected_prev:
            problem = (
                f"event #{seq} does not follow #{seq - 1}: its prev_hash does not match "
                "(an earlier event was removed, reordered or rewritten)"
            )
            return _Checked(first_seq, first_prev, seq, "", count, (seq, problem, expected_prev))
        if sha256(prev.encode() + content).hexdigest() != digest:
            problem = (
                f"event #{seq} ({event_type}) was modified: its content no longer matches its hash"
            )
            return _Checked(first_seq, first_prev, seq, "", count, (seq, problem, expected_prev))
        expected_seq = seq + 1
        expected_prev = digest
        count += 1
    return _Checked(first_seq, first_prev, (expected_seq or 1) - 1, expected_prev or "", count)


def _check_block(block: bytes) -> _Checked:
    return _check(_rows_from_copy(block), None, None)


def _copy_blocks() -> Iterator[bytes]:
    """The COPY stream cut into blocks of whole lines."""
    pending = bytearray()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        cursor.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    with connection.cursor() as cursor, cursor.cursor.copy(_PG_COPY_SQL) as copy:
        for chunk in copy:
            pending += chunk
            if len(pending) >= BLOCK_BYTES:
                cut = pending.rfind(b"\n") + 1
                yield bytes(pending[:cut])
                del pending[:cut]
    if pending:
        yield bytes(pending)


def _check_range(conninfo: str, low: int, high: int | None) -> _Checked:
    """A worker process: read events low..high over its own connection and check them.

    Events up to the head are committed and never change (the table is append-only), so
    separate snapshots per range see the same chain a single walk would.
    """
    import psycopg

    upper = f"AND seq <= {int(high)}" if high is not None else ""
    sql = _PG_COPY_SQL.replace("ORDER BY seq", f"WHERE seq >= {int(low)} {upper} ORDER BY seq")
    buffer = bytearray()
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET DateStyle = 'ISO, YMD'")
        with conn.cursor().copy(sql) as copy:
            for chunk in copy:
                buffer += chunk
    return _check_block(bytes(buffer))


def _conninfo() -> str:
    from psycopg.conninfo import make_conninfo

    db = connection.settings_dict
    return make_conninfo(
        dbname=db["NAME"],
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=str(db["PORT"]) if db.get("PORT") else None,
        **{k: v for k, v in (db.get("OPTIONS") or {}).items() if k in ("sslmode", "sslrootcert")},
    )


def _checked_blocks(parallel: bool, total: int) -> Iterator[_Checked]:
    if not parallel:
        for block in _copy_blocks():
            yield _check_block(block)
        return
    # Worker processes each read and check a range of events over their own connection, so
    # that PostgreSQL and Python both work on two cores. Results come back in chain order.
    context = multiprocessing.get_context("fork")
    workers = min(2, os.cpu_count() or 1)
    conninfo = _conninfo()
    lows = list(range(1, max(total, 1) + 1, RANGE_EVENTS))
    highs: list[int | None] = [low - 1 for low in lows[1:]] + [None]  # the last runs to the end
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        yield from pool.map(_check_range, [conninfo] * len(lows), lows, highs)
    finally:
        # After the first bad range the rest need not run.
        pool.shutdown(wait=True, cancel_futures=True)


def _verify_postgresql(total: int) -> tuple[_Checked | None, int, str, int]:
    """(failure block or None, events verified, last good hash, next expected seq)."""
    expected_seq, expected_prev, count = 1, GENESIS_HASH, 0
    for checked in _checked_blocks(total >= PARALLEL_FROM, total):
        if checked.first_seq is None:
            continue
        if checked.first_seq != expected_seq or checked.first_prev != expected_prev:
            # Re-check the seam exactly as a sequential walk would have met it.
            seam = _check(
                [(checked.first_seq, b"", "", checked.first_prev, "")], expected_seq, expected_prev
            )
            return seam, count, expected_prev, expected_seq
        if checked.failure is not None:
            return checked, count + checked.count, expected_prev, expected_seq
        count += checked.count
        expected_seq = checked.last_seq + 1
        expected_prev = checked.last_hash
    return None, count, expected_prev, expected_seq


def verify_chain(*, batch_size: int = 20000) -> Verification:
    """Walk the chain in order and recompute every hash.

    Reports the first event that was modified (its hash no longer matches its content), removed
    (a gap in seq or a prev_hash that does not match its predecessor) or reordered.
    """
    head = AuditHead.objects.filter(id=1).first()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            failed, count, last_hash, _ = _verify_postgresql(head.seq if head else 0)
        else:
            checked = _check(_rows_generic(batch_size), 1, GENESIS_HASH)
            failed = checked if checked.failure else None
            count, last_hash = checked.count, checked.last_hash or GENESIS_HASH
    if failed is not None and failed.failure is not None:
        seq, problem, expected_prev = failed.failure
        if expected_prev:
            last_hash = expected_prev
        return Verification(False, count, last_hash, seq, problem)
    # The head was read before the walk, so events appended meanwhile make count larger than
    # head.seq: that is traffic, not tampering. Fewer than the head means the end was cut off.
    if head is not None and count < head.seq:
        return Verification(
            False,
            count,
            last_hash,
            count + 1,
            f"the chain ends at #{count} but its head says #{head.seq}: events were removed "
            "from the end",
        )
    return Verification(True, count, last_hash)


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
