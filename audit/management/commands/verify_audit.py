from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.verify import verify_and_record


class Command(BaseCommand):
    help = (
        "Recompute the whole audit hash chain and compare it with the anchor's checkpoints; "
        "exit 0 with the head hash, or count the bad events and name the first few."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = verify_and_record()
        for note in result.notes:
            self.stderr.write(f"note: {note}")
        if not result.ok:
            listed = "".join(
                f"\n  #{f.seq}: {f.problem}" if f.seq is not None else f"\n  {f.problem}"
                for f in result.findings
            )
            more = result.bad_events - len(result.findings)
            tail = f"\n  … and {more} more" if more > 0 else ""
            raise CommandError(f"audit chain {result.broken_summary()}{listed}{tail}")
        self.stdout.write(f"audit chain intact: {result.events} events")
        self.stdout.write(f"head {result.head_hash}")
        self.stdout.write(f"anchor checkpoints matched: {result.checkpoints}")
