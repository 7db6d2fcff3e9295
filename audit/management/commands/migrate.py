from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS

from audit import grants


class Command(migrate.Command):
    help = (
        migrate.Command.help + " With MIGRATION_DATABASE_URL set, migrations run as that role "
        "(the owner) and DATABASE_URL's role is then granted what the app needs: read and "
        "append only on the audit tables."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        owner_url = settings.MIGRATION_DATABASE_URL
        if not owner_url or options["database"] != DEFAULT_DB_ALIAS:
            super().handle(*args, **options)
            return
        with grants.as_owner(owner_url) as runtime:
            super().handle(*args, **options)
            ran = grants.grant_runtime_role(runtime)
        if options["verbosity"] >= 1:
            tables = sum(1 for s in ran if s.startswith("GRANT") and " ON TABLE " in s)
            others = tables - len(grants.APPEND_ONLY) - len(grants.READ_ONLY)
            self.stdout.write(
                f"Granted role {runtime!r} read and write on {others} tables, read and append "
                f"only on {', '.join(grants.APPEND_ONLY)}, read only on "
                f"{', '.join(grants.READ_ONLY)}."
            )
