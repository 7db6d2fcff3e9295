"""Two database roles: the owner migrates; the role the app runs as cannot rewrite the audit log.

These tests make their own PostgreSQL roles and databases (cluster-wide names, prefixed with
this process's id) and drop them afterwards. `manage.py` runs in subprocesses, as production
runs it: `migrate` with MIGRATION_DATABASE_URL and DATABASE_URL set, the app as DATABASE_URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.conf import settings
from psycopg import errors, sql

from tests.receivers import SyslogReceiver

PREFIX = f"soc_t{os.getpid()}_"


def _server_url(role: str, database: str) -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{role}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{database}"


def _superuser() -> psycopg.Connection:
    return psycopg.connect(
        _server_url(settings.DATABASES["default"].get("USER") or "postgres", "postgres"),
        autocommit=True,
    )


def manage(*args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "PYTEST_", "MIGRATION_"))
    }
    environment.update(DJANGO_SETTINGS_MODULE="soc_console.settings", **env)
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)}: {done.stdout}\n{done.stderr}")
    return done


@dataclass
class SplitRoles:
    database: str
    owner: str
    runtime: str
    migrated: str  # what migrate printed

    @property
    def owner_url(self) -> str:
        return _server_url(self.owner, self.database)

    @property
    def runtime_url(self) -> str:
        return _server_url(self.runtime, self.database)

    def as_runtime(self) -> psycopg.Connection:
        return psycopg.connect(self.runtime_url, autocommit=True)

    def app(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return manage(*args, check=check, DATABASE_URL=self.runtime_url)


@pytest.fixture(scope="module")
def roles() -> Iterator[SplitRoles]:
    owner, runtime, database = f"{PREFIX}owner", f"{PREFIX}app", f"{PREFIX}roles"
    with _superuser() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(runtime)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        )
    try:
        split = SplitRoles(database, owner, runtime, "")
        split.migrated = manage(
            "migrate",
            "--noinput",
            DATABASE_URL=split.runtime_url,
            MIGRATION_DATABASE_URL=split.owner_url,
        ).stdout
        split.app("create_agent", "roles-bot", "--grant", "block_ip=2")
        yield split
    finally:
        with _superuser() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            for role in (runtime, owner):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_migrate_grants_the_runtime_role_and_the_app_runs_as_it(roles: SplitRoles) -> None:
    assert f"Granted role '{roles.runtime}'" in roles.migrated
    with roles.as_runtime() as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
            "WHERE relname LIKE 'audit\\_%' AND relkind = 'r'"
        ).fetchall()
        events = conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0]
    assert owners == [(roles.owner,)]
    assert events >= 1  # create_agent, run as the runtime role, recorded its events
    verified = roles.app("verify_audit")
    assert f"audit chain intact: {events} events" in verified.stdout


def test_the_forwarder_moves_its_cursor_as_the_runtime_role(roles: SplitRoles) -> None:
    with roles.as_runtime() as conn:
        events = conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0]
    with SyslogReceiver() as receiver:
        done = manage(
            "forward_audit",
            "--once",
            DATABASE_URL=roles.runtime_url,
            AUDIT_FORWARD_URL=receiver.url,
        )
    assert f"delivered up to #{events}" in done.stdout
    assert receiver.seqs() == set(range(1, events + 1))


REFUSED_TO_THE_RUNTIME_ROLE = {
    "disable the triggers": ["ALTER TABLE audit_auditevent DISABLE TRIGGER USER"],
    "disable every trigger": ["ALTER TABLE audit_auditevent DISABLE TRIGGER ALL"],
    "drop a trigger": ["DROP TRIGGER audit_event_no_update ON audit_auditevent"],
    "truncate with the escape hatch": [
        "SET soc.allow_audit_truncate = 'on'",
        "TRUNCATE audit_auditevent",
    ],
    "rewrite an event": ["UPDATE audit_auditevent SET actor = 'mallory'"],
    "delete the tail": [
        "DELETE FROM audit_auditevent WHERE seq = (SELECT max(seq) FROM audit_auditevent)"
    ],
    "reset the head (delete every event)": ["DELETE FROM audit_auditevent"],
    "reset the head (replace the head function)": [
        "CREATE OR REPLACE FUNCTION audit_chain_head(OUT head_seq bigint, OUT head_hash varchar) "
        "LANGUAGE sql AS $$ SELECT 0::bigint, repeat('0', 64)::varchar $$"
    ],
    "alter the table": ["ALTER TABLE audit_auditevent RENAME TO audit_old"],
    "rewrite a verification run": ["UPDATE audit_verificationrun SET ok = true"],
    "delete verification runs": ["DELETE FROM audit_verificationrun"],
    "mark a migration as run": [
        "INSERT INTO django_migrations (app, name, applied) VALUES ('audit', 'x', now())"
    ],
}


@pytest.mark.parametrize("attempt", list(REFUSED_TO_THE_RUNTIME_ROLE))
def test_the_runtime_role_cannot_rewrite_the_audit_log(roles: SplitRoles, attempt: str) -> None:
    with roles.as_runtime() as conn:
        before = conn.execute("SELECT count(*), max(seq) FROM audit_auditevent").fetchone()
        *setup, statement = REFUSED_TO_THE_RUNTIME_ROLE[attempt]
        for line in setup:
            conn.execute(line)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)
        after = conn.execute("SELECT count(*), max(seq) FROM audit_auditevent").fetchone()
    assert after == before
    assert "audit chain intact" in roles.app("verify_audit").stdout


def test_the_truncate_escape_hatch_only_opens_for_the_owner(roles: SplitRoles) -> None:
    # Suppose TRUNCATE were granted by mistake: the trigger still refuses the runtime role.
    with psycopg.connect(roles.owner_url, autocommit=True) as owner:
        owner.execute(
            sql.SQL("GRANT TRUNCATE ON audit_auditevent TO {}").format(
                sql.Identifier(roles.runtime)
            )
        )
    try:
        with roles.as_runtime() as conn:
            conn.execute("SET soc.allow_audit_truncate = 'on'")
            with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
                conn.execute("TRUNCATE audit_auditevent")
            assert conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0] > 0
    finally:
        with psycopg.connect(roles.owner_url, autocommit=True) as owner:
            owner.execute(
                sql.SQL("REVOKE TRUNCATE ON audit_auditevent FROM {}").format(
                    sql.Identifier(roles.runtime)
                )
            )


def test_an_event_appended_by_hand_without_the_key_is_caught(roles: SplitRoles) -> None:
    # The runtime role may append; without AUDIT_KEY it cannot hash what it appends.
    with roles.as_runtime() as conn:
        seq, digest = conn.execute(
            "SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO audit_auditevent (seq, at, actor_type, actor, event_type, data, "
            "prev_hash, hash) VALUES (%s, now(), 'user', 'mallory', 'proposal.approved', "
            "'{}', %s, %s)",
            [seq + 1, digest, hashlib.sha256(b"forged").hexdigest()],
        )
    failed = roles.app("verify_audit", check=False)
    assert failed.returncode != 0
    assert f"BROKEN at event #{seq + 1}: event #{seq + 1} (proposal.approved) was modified" in (
        failed.stderr
    )


def test_migrate_refuses_a_runtime_role_that_could_disable_the_triggers(
    roles: SplitRoles,
) -> None:
    superuser = settings.DATABASES["default"].get("USER") or "postgres"
    refused = manage(
        "migrate",
        "--noinput",
        check=False,
        DATABASE_URL=_server_url(superuser, roles.database),
        MIGRATION_DATABASE_URL=roles.owner_url,
    )
    assert refused.returncode != 0
    assert "is a superuser: it could disable the audit log's triggers" in refused.stderr


# --- a chain recorded before the key ---------------------------------------------------------


def _legacy_content(seq: int, at: datetime, data: dict) -> bytes:
    """How events were hashed before the key: plain JSON of the event, then SHA-256."""
    body = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_type": "agent",
        "actor": "old-bot",
        "event_type": "proposal.submitted",
        "proposal_id": None,
        "data": data,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


@pytest.fixture
def scratch_database() -> Iterator[str]:
    name = f"{PREFIX}legacy_{uuid.uuid4().hex[:6]}"
    with _superuser() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _server_url(settings.DATABASES["default"].get("USER") or "postgres", name)
    finally:
        with _superuser() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_a_chain_hashed_before_the_key_is_checked_then_re_hashed_under_it(
    scratch_database: str,
) -> None:
    manage("migrate", "audit", "0003", "--noinput", DATABASE_URL=scratch_database)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    prev = "0" * 64
    # Event 3 carries the -0.0 that jsonb stores as 0.0: the old check failed on it forever.
    payloads = [{"confidence": 0.5}, {"n": 1e-5}, {"confidence": -0.0}, {"ok": True}]
    with psycopg.connect(scratch_database, autocommit=True) as conn:
        for seq, data in enumerate(payloads, start=1):
            at = start + timedelta(minutes=seq)
            digest = hashlib.sha256(prev.encode() + _legacy_content(seq, at, data)).hexdigest()
            conn.execute(
                "INSERT INTO audit_auditevent (seq, at, actor_type, actor, event_type, data, "
                "prev_hash, hash) VALUES (%s, %s, 'agent', 'old-bot', 'proposal.submitted', "
                "%s::jsonb, %s, %s)",
                [seq, at, json.dumps(data), prev, digest],
            )
            prev = digest
        conn.execute("INSERT INTO audit_audithead (id, seq, hash) VALUES (1, 4, %s)", [prev])
    migrated = manage("migrate", "--noinput", DATABASE_URL=scratch_database).stdout
    assert "re-hashed 4 audit events under AUDIT_KEY" in migrated
    verified = manage("verify_audit", DATABASE_URL=scratch_database)
    assert "audit chain intact: 5 events" in verified.stdout
    with psycopg.connect(scratch_database) as conn:
        event_type, data, prev_hash = conn.execute(
            "SELECT event_type, data, prev_hash FROM audit_auditevent WHERE seq = 5"
        ).fetchone()
    assert event_type == "audit.rekeyed"
    assert data == {
        "events": 4,
        "legacy_head_seq": 4,
        "legacy_head_hash": prev,
        "legacy_check": "1 bad: event #3 does not match its hash",
    }
    assert prev_hash != prev  # chained to the re-hashed event #4
