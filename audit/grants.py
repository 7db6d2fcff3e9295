"""Two database roles: the owner migrates, the runtime role the app runs as may not rewrite
the audit log.

A role that owns a table can disable its triggers, truncate it and alter it, so the role the
app runs as must not own the audit tables. With MIGRATION_DATABASE_URL set, `migrate` runs as
that role (the owner of every table) and then grants DATABASE_URL's role what the app needs:
read and append on the audit tables, read and write on the others, nothing that changes a
table's definition or its triggers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dj_database_url
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.recorder import MigrationRecorder

from . import sql
from .models import AuditEvent, VerificationRun

# Events and verification runs: the runtime role reads them and appends, nothing else.
APPEND_ONLY = (AuditEvent._meta.db_table, VerificationRun._meta.db_table)
# Which migrations ran: only `migrate`, as the owner, writes it.
READ_ONLY = (MigrationRecorder.Migration._meta.db_table,)


@contextmanager
def as_owner(url: str) -> Iterator[str]:
    """Connect the default database as MIGRATION_DATABASE_URL's role; yields the runtime role.

    The owner works over one plain connection (no pool): a migration is one session.
    """
    db = connections[DEFAULT_DB_ALIAS]
    settings_dict = db.settings_dict
    runtime = settings_dict.get("USER") or ""
    if not runtime:
        raise CommandError("DATABASE_URL must name its role when MIGRATION_DATABASE_URL is set")
    owner = dj_database_url.parse(url)
    saved = {key: settings_dict.get(key) for key in ("USER", "PASSWORD", "OPTIONS")}
    _disconnect(db)
    settings_dict["USER"] = owner["USER"]
    settings_dict["PASSWORD"] = owner.get("PASSWORD", "")
    settings_dict["OPTIONS"] = {
        key: value for key, value in (saved["OPTIONS"] or {}).items() if key != "pool"
    }
    try:
        yield runtime
    finally:
        _disconnect(db)
        settings_dict.update(saved)


def _disconnect(db: Any) -> None:
    db.close()
    if getattr(db, "pool", None) is not None:
        db.close_pool()


def _quote(cursor: Any, name: str) -> str:
    from psycopg import sql

    return sql.Identifier(name).as_string(cursor.connection)


def grant_runtime_role(runtime: str) -> list[str]:
    """Grant `runtime` what the app needs on every table the current role owns.

    Refuses a runtime role that is the owner, a member of it, or a superuser: such a role could
    disable the audit triggers whatever it is granted. Returns the statements it ran.
    """
    db = connections[DEFAULT_DB_ALIAS]
    ran: list[str] = []
    with db.cursor() as cursor:
        raw = cursor.cursor
        cursor.execute(sql.ROLE_FACTS, [runtime])
        row = cursor.fetchone()
        if row is None:
            raise CommandError(f"DATABASE_URL's role {runtime!r} does not exist")
        superuser, member_of_owner, owner, schema = row
        if superuser or member_of_owner:
            raise CommandError(
                f"DATABASE_URL's role {runtime!r} is "
                + ("a superuser" if superuser else f"the owner {owner!r} or a member of it")
                + ": it could disable the audit log's triggers. Use a role of its own."
            )
        cursor.execute(sql.OWNED_BY_CURRENT_ROLE)
        objects = cursor.fetchall()
        cursor.execute(sql.OWNED_BY_ROLE, [runtime])
        owned = [name for (name,) in cursor.fetchall()]
        if owned or not set(APPEND_ONLY) <= {name for name, _ in objects}:
            # An install that ran as one role: its tables belong to the role the app runs as.
            raise CommandError(
                f"the audit tables must belong to {owner!r}, and none to {runtime!r} (it owns "
                f"{', '.join(owned[:5]) or 'none'}{', …' if len(owned) > 5 else ''}). As a "
                f"superuser: REASSIGN OWNED BY {runtime} TO {owner}; then migrate again."
            )
        role = _quote(raw, runtime)
        statements = [sql.grant_schema(_quote(raw, schema), role)]
        for name, kind in objects:
            target = _quote(raw, name)
            if kind == "S":
                statements.append(sql.grant_sequence(target, role))
                continue
            rights = (
                "SELECT"
                if name in READ_ONLY
                else "SELECT, INSERT"
                if name in APPEND_ONLY
                else "SELECT, INSERT, UPDATE, DELETE"
            )
            statements += sql.grant_table(target, role, rights)
        for statement in statements:
            cursor.execute(statement)
            ran.append(statement)
    return ran
