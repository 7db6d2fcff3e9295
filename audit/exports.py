from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet

from .models import AuditEvent


def jsonl_rows(events: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    """Events as a SIEM reads them: one JSON object per line, with the chain hashes."""
    for event in events.iterator(chunk_size=2000):
        yield event.siem_record()


# A spreadsheet opening a CSV runs a cell that starts with one of these as a formula (and a
# formula can fetch URLs or, through DDE, start programs). Usernames, targets, agents' names
# and reasons all reach the report CSVs, and all can be chosen by someone outside the SOC.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A cell as a spreadsheet must show it: text that would start a formula gets a leading
    apostrophe (shown as text, the original still readable after it); numbers, including
    negative ones, stay numbers."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class CsvWriter:
    """csv.writer for every CSV the console exports: each cell goes through csv_cell."""

    def __init__(self, stream: Any) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_cell(cell) for cell in row])
