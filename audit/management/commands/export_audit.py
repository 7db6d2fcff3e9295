from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import exports, selectors
from audit.filters import BadFilter, moment


def _moment(raw: str | None, name: str) -> datetime | None:
    try:
        return moment(raw, end=name == "until")
    except BadFilter as exc:
        raise CommandError(f"--{name}: {exc}") from exc


class Command(BaseCommand):
    help = (
        "Export audit events as JSON lines for a SIEM: from --since, up to --until (a date "
        "alone: through that day, as on the audit page; a date and time: before it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="Date or ISO datetime; events at or after it.")
        parser.add_argument(
            "--until", help="Date (through that day) or ISO datetime (events before it)."
        )
        parser.add_argument("--output", help="File to write; standard output when omitted.")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _moment(options.get("since"), "since")
        until = _moment(options.get("until"), "until")
        events = selectors.audit_events(since=since, until=until).order_by("seq")
        path = options.get("output")
        count = 0
        out = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115
        try:
            for line in exports.jsonl_rows(events):
                text = json.dumps(line)
                if out:
                    out.write(text + "\n")
                else:
                    self.stdout.write(text)  # adds the newline itself
                count += 1
        finally:
            if out:
                out.close()
        if path:
            # On stderr, so that standard output stays pure JSON lines when piped.
            sys.stderr.write(f"wrote {count} events to {path}\n")
