from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.accounts import role_grant
from soc_console import roles
from soc_console.errors import DomainError


class Command(BaseCommand):
    help = (
        "Give a user a console role: "
        + ", ".join(roles.ALL)
        + ". Granting a role the user has already changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="an existing user (createsuperuser, the admin)")
        parser.add_argument("role", help="one of: " + ", ".join(roles.ALL))

    def handle(self, *args: Any, **options: Any) -> None:
        username, role = options["username"], options["role"]
        try:
            granted = role_grant(username=username, role=role, by="grant_role")
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        if granted:
            self.stdout.write(f"{username} now has the role {role}.")
        else:
            self.stdout.write(f"{username} already has the role {role}; nothing changed.")
