"""Fast row writers for generated history: COPY on PostgreSQL, batched INSERT elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection

from . import sql


def write_rows(table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Append rows to a table; values are Python objects, JSON columns already as text.

    COPY is an order of magnitude faster than INSERT for the million-row benchmark; SQLite
    (the zero-configuration local database) gets multi-row INSERTs instead.
    """
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(sql.copy_rows(table, columns)) as copy:
                for row in rows:
                    copy.write_row(row)
        return
    ops = connection.ops
    adapted = [tuple(_adapt(ops, value) for value in row) for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql.insert_rows(table, columns), adapted)


def _adapt(ops: Any, value: Any) -> Any:
    import datetime
    import uuid

    if isinstance(value, datetime.datetime):
        return ops.adapt_datetimefield_value(value)
    if isinstance(value, uuid.UUID):
        return value.hex  # how Django stores a UUIDField on SQLite
    return value
