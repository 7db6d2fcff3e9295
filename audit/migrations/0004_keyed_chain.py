"""The audit chain becomes keyed, and its head is its last event.

- `audit_chain_head()`: every append starts here (audit/log.py). It takes a transaction-level
  advisory lock, so appends take turns, and then reads the last event on a fresh snapshot. The
  head row it replaces (dropped in 0005) had to be writable by the role the app runs as, so
  that role could move it back; a head derived from the events cannot be moved without
  deleting events, which the triggers and the role's privileges refuse.
- The TRUNCATE escape hatch (`soc.allow_audit_truncate`, which test databases set to flush)
  now only works for the table's owner or a superuser, who could disable the trigger anyway.
- Events recorded before were hashed with plain SHA-256. They are checked with that function
  first, then re-hashed in order with HMAC-SHA256 under AUDIT_KEY, and an `audit.rekeyed` event
  records how many there were, the old head, and what the old check found: the keyed chain
  vouches for the log as it stood when it was migrated, and says so.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from typing import Any

from django.db import migrations

CHAIN_LOCK = 8317976307009087860  # b"socaudit": the one advisory lock appends take turns on

PG_UP = f"""
CREATE OR REPLACE FUNCTION audit_chain_head(OUT head_seq bigint, OUT head_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- Held until the appending transaction ends. The read below takes its snapshot after the
    -- lock is granted, so it sees the event the previous holder committed.
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
    SELECT e.seq, e.hash INTO head_seq, head_hash
      FROM audit_auditevent AS e ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE'
       AND current_setting('soc.allow_audit_truncate', true) = 'on'
       AND (pg_has_role(current_user,
                        (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')
            OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit log is append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
PG_DOWN = """
DROP FUNCTION IF EXISTS audit_chain_head();
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('soc.allow_audit_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit log is append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
SQLITE_NO_UPDATE = """CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END;"""
GENESIS = "0" * 64
COLUMNS = "seq, at, actor_type, actor, event_type, proposal_id, data, prev_hash, hash"
BATCH = 5000


class _LegacyCheck:
    """The plain SHA-256 chain as verify_audit checked it before this migration."""

    def __init__(self) -> None:
        self.expected_seq, self.expected_prev = 1, GENESIS
        self.bad, self.first = 0, ""

    def see(self, seq: int, prev: str, digest: str, body: dict[str, Any]) -> None:
        # The old encoder, as it was: whatever the column returns, unnormalised.
        content = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
        problem = ""
        if seq != self.expected_seq:
            problem = f"event #{self.expected_seq} is missing"
        elif prev != self.expected_prev:
            problem = f"event #{seq} does not follow #{seq - 1}"
        if hashlib.sha256(prev.encode() + content).hexdigest() != digest and not problem:
            problem = f"event #{seq} does not match its hash"
        if problem:
            self.bad += 1
            self.first = self.first or problem
        self.expected_seq, self.expected_prev = seq + 1, digest


def _set_update_trigger(db: Any, enabled: bool) -> None:
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            state = "ENABLE" if enabled else "DISABLE"
            cursor.execute(f"ALTER TABLE audit_auditevent {state} TRIGGER audit_event_no_update")
        elif enabled:
            cursor.execute(SQLITE_NO_UPDATE)
        else:
            cursor.execute("DROP TRIGGER IF EXISTS audit_event_no_update")


def _write(db: Any, batch: list[tuple[int, str, str]]) -> None:
    if not batch:
        return
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            values = ", ".join(["(%s::bigint, %s, %s)"] * len(batch))
            cursor.execute(
                "UPDATE audit_auditevent AS e SET prev_hash = v.prev_hash, hash = v.hash "  # noqa: S608
                f"FROM (VALUES {values}) AS v(seq, prev_hash, hash) WHERE e.seq = v.seq",
                [value for row in batch for value in row],
            )
        else:
            cursor.executemany(
                "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE seq = %s",
                [(prev, digest, seq) for seq, prev, digest in batch],
            )


def _old_head(db: Any) -> int | None:
    with db.cursor() as cursor:
        cursor.execute("SELECT seq FROM audit_audithead WHERE id = 1")
        row = cursor.fetchone()
    return int(row[0]) if row else None


def rekey(apps: Any, schema_editor: Any) -> None:
    from datetime import UTC, datetime

    from audit import log

    db = schema_editor.connection
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_auditevent")
        (count,) = cursor.fetchone()
    if not count:
        return
    legacy = _LegacyCheck()
    new_prev, last_old = GENESIS, GENESIS
    batch: list[tuple[int, str, str]] = []
    _set_update_trigger(db, enabled=False)  # before the cursor: ALTER waits for none
    # A server-side cursor on PostgreSQL: the table may hold millions of events. SQLite reads
    # them all first, because it leaves updates to a table that a statement is still reading
    # undefined (and a local database is small).
    with db.chunked_cursor() as rows:
        rows.execute(f"SELECT {COLUMNS} FROM audit_auditevent ORDER BY seq")  # noqa: S608
        chunks = iter(lambda: rows.fetchmany(BATCH), [])
        if db.vendor != "postgresql":
            chunks = iter([rows.fetchall()])
        for chunk in chunks:
            for seq, at, actor_type, actor, event_type, proposal_id, data, prev, digest in chunk:
                if isinstance(at, str):
                    at = datetime.fromisoformat(at)
                if at.tzinfo is None:
                    at = at.replace(tzinfo=UTC)
                event = {
                    "seq": seq,
                    "at": at,
                    "actor_type": actor_type,
                    "actor": actor,
                    "event_type": event_type,
                    "proposal_id": proposal_id,
                    "data": json.loads(data) if isinstance(data, str) else data,
                }
                legacy.see(
                    seq,
                    prev,
                    digest,
                    {
                        **event,
                        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                        "proposal_id": str(uuid.UUID(str(proposal_id))) if proposal_id else None,
                    },
                )
                new = log.event_hash(new_prev, log.canonical(**event))
                batch.append((seq, new_prev, new))
                new_prev, last_old = new, digest
            _write(db, batch)
            batch.clear()
    _set_update_trigger(db, enabled=True)
    last_seq = legacy.expected_seq - 1
    head = _old_head(db)
    if head is not None and head > last_seq:
        legacy.bad += 1
        legacy.first = legacy.first or f"the chain ends at #{last_seq} but its head said #{head}"
    outcome = "intact" if not legacy.bad else f"{legacy.bad} bad: {legacy.first}"
    log.record(
        event_type="audit.rekeyed",
        actor="migration",
        actor_type="system",
        data={
            "events": count,
            "legacy_head_seq": last_seq,
            "legacy_head_hash": last_old,
            "legacy_check": outcome,
        },
    )
    sys.stdout.write(
        f"\n  re-hashed {count} audit events under AUDIT_KEY (SHA-256 check before: {outcome})"
    )


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_UP, params=None)
    rekey(apps, schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    # The keyed hashes stay: going back does not bring the plain SHA-256 chain back.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_DOWN, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_report_indexes")]
    operations = [migrations.RunPython(forwards, backwards)]
