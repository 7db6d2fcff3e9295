"""The test provider's commands: `serve PORT` (its database created first), and `apply SPEC`
(JSON: a client and users with their groups, created or brought to exactly what SPEC says)."""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")
    import django

    django.setup()
    from django.core.management import call_command

    command = argv[0]
    if command == "serve":
        # One process start instead of two: the database is new each run.
        call_command("migrate", verbosity=0, interactive=False)
        call_command("runserver", f"127.0.0.1:{argv[1]}", use_reloader=False, skip_checks=True)
    elif command == "apply":
        apply(json.loads(argv[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")


def apply(spec: dict) -> None:
    from django.contrib.auth.models import Group, User
    from oauth2_provider.models import Application

    client = spec.get("client")
    if client:
        application = Application.objects.filter(client_id=client["id"]).first() or Application(
            client_id=client["id"]
        )
        application.name = "SOC Approval Console"
        application.client_type = Application.CLIENT_CONFIDENTIAL
        application.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
        application.client_secret = client["secret"]  # stored hashed
        application.redirect_uris = client["redirect_uri"]
        application.algorithm = Application.RS256_ALGORITHM
        application.skip_authorization = True  # no consent screen: the SOC's own application
        application.save()
    for username, user_spec in spec.get("users", {}).items():
        user = User.objects.filter(username=username).first() or User(username=username)
        user.email = f"{username}@corp.example"
        # A new hash would end the user's session at the provider (Django ties sessions to
        # the password): changing only the groups must leave it, as a real provider does.
        if not user.check_password(user_spec["password"]):
            user.set_password(user_spec["password"])
        user.save()
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in user_spec["groups"]])


if __name__ == "__main__":
    main(sys.argv[1:])
