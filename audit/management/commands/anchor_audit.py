from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.anchor import AnchorError, anchor_head


class Command(BaseCommand):
    help = (
        "Sign the audit chain's head (seq, hash, time) with AUDIT_KEY and append the checkpoint "
        "to every AUDIT_ANCHOR_URL (or to the --to URLs)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--to",
            action="append",
            metavar="URL",
            help="file:///path.jsonl or syslog+tcp://host:port instead of AUDIT_ANCHOR_URL "
            "(repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            checkpoint = anchor_head(options.get("to"))
        except AnchorError as exc:
            raise CommandError(f"audit checkpoint not anchored: {exc}") from exc
        if checkpoint is None:
            self.stdout.write("the audit chain is empty: nothing to anchor")
            return
        self.stdout.write(f"anchored checkpoint #{checkpoint.seq} {checkpoint.hash}")
