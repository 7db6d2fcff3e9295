"""Model instances from plain SQL rows.

A few statements run on every request or every execution (the API key check, the claim). The
ORM takes longer to build each of them than PostgreSQL takes to run it, so they are written as
SQL; these helpers turn their rows back into the same model instances the ORM would return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import models

M = TypeVar("M", bound=models.Model)


def columns(model: type[models.Model], connection: Any, alias: str = "") -> str:
    """Every concrete column of the model, in field order, for a SELECT or RETURNING list."""
    quote = connection.ops.quote_name
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + quote(field.column) for field in model._meta.concrete_fields)


def instance(model: type[M], row: Sequence[Any], connection: Any) -> M:
    """The instance for a row of `columns(model)`, its values converted as the ORM would."""
    names, converters = _converters(model, connection)
    values = []
    for value, (column, convert_all) in zip(row, converters, strict=True):
        for convert in convert_all:
            value = convert(value, column, connection)
        values.append(value)
    return model.from_db(connection.alias, names, values)


# Per model and database: the attribute names and each column's converters, which the ORM
# looks up anew for every query (about 0.7 ms per claim, measured in the worker).
_Converters = tuple[list[str], list[tuple[Any, list]]]
_CONVERTERS: dict[tuple[type[models.Model], str, str], _Converters] = {}


def _converters(model: type[models.Model], connection: Any) -> _Converters:
    key = (model, connection.alias, connection.vendor)
    found = _CONVERTERS.get(key)
    if found is None:
        fields = model._meta.concrete_fields
        table = model._meta.db_table
        listed = []
        for field in fields:
            column = field.get_col(table)
            listed.append(
                (
                    column,
                    connection.ops.get_db_converters(column) + column.get_db_converters(connection),
                )
            )
        found = _CONVERTERS[key] = ([field.attname for field in fields], listed)
    return found


def width(model: type[models.Model]) -> int:
    """How many columns `columns(model)` lists: where the next model's columns start in a row."""
    return len(model._meta.concrete_fields)
