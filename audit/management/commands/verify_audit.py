from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.log import verify_and_record


class Command(BaseCommand):
    help = "Recompute the audit hash chain; exit 0 with the head hash, or name the first bad event."

    def handle(self, *args: Any, **options: Any) -> None:
        result = verify_and_record()
        if not result.ok:
            raise CommandError(
                f"audit chain BROKEN at event #{result.first_bad_seq}: {result.problem} "
                f"({result.events} events verified before it)"
            )
        self.stdout.write(f"audit chain intact: {result.events} events")
        self.stdout.write(f"head {result.head_hash}")
