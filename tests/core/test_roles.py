"""Roles on a real install: the groups come with `migrate`, `grant_role` and the admin give
them, and senior analysts may suspend an agent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import AuditEvent
from soc_console import roles
from tests import factories

pytestmark = pytest.mark.django_db


def _manage(*args: str, database: Path) -> subprocess.CompletedProcess:
    """manage.py against a fresh SQLite file: the database `make run` uses by default."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "soc_console.settings"}
    env.pop("DATABASE_URL", None)
    env["SQLITE_PATH"] = str(database)
    env["DJANGO_SUPERUSER_PASSWORD"] = "a-long-password-for-tests"
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_fresh_install_can_give_roles_without_the_demo_data(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"
    migrated = _manage("migrate", "--noinput", database=database)
    assert migrated.returncode == 0, migrated.stderr
    created = _manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "lead",
        "--email",
        "lead@soc.example",
        database=database,
    )
    assert created.returncode == 0, created.stderr
    granted = _manage("grant_role", "lead", "senior_analyst", database=database)
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.strip() == "lead now has the role senior_analyst."
    listed = _manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth.models import Group; "
        "print(sorted(Group.objects.values_list('name', flat=True))); "
        "print(list(Group.objects.get(name='senior_analyst').user_set.values_list('username', "
        "flat=True)))",
        database=database,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\n")[:2] == [
        "['admin', 'analyst', 'manager', 'senior_analyst']",
        "['lead']",
    ]


def test_the_role_groups_are_the_roles_the_console_checks() -> None:
    from importlib import import_module

    migration = import_module("approvals.migrations.0002_role_groups")
    assert set(migration.ROLES) == set(roles.ALL)


def test_grant_role_gives_the_role_once_and_audits_it() -> None:
    user = factories.user("dana")
    call_command("grant_role", "dana", "analyst")
    assert roles.can_decide(User.objects.get(pk=user.pk))
    [event] = AuditEvent.objects.filter(event_type="role.granted")
    assert event.actor == "grant_role"
    assert event.data == {"user": "dana", "role": "analyst"}

    call_command("grant_role", "dana", "analyst")  # again: nothing changes
    assert AuditEvent.objects.filter(event_type="role.granted").count() == 1
    assert list(user.groups.values_list("name", flat=True)) == ["analyst"]


def test_grant_role_names_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("grant_role", "nobody", "analyst")
    assert not AuditEvent.objects.filter(event_type="role.granted").exists()


def test_grant_role_names_an_unknown_role_and_lists_the_known_ones() -> None:
    user = factories.user("dana")
    with pytest.raises(
        CommandError,
        match="Unknown role 'boss': the roles are analyst, senior_analyst, manager, admin",
    ):
        call_command("grant_role", "dana", "boss")
    assert not user.groups.exists()
    assert not Group.objects.filter(name="boss").exists()


def test_the_admin_assigns_a_role() -> None:
    root = User.objects.create_superuser("root", "root@soc.example", "pass-for-tests")
    user = factories.user("erin")
    client = Client()
    client.force_login(root)
    form = client.get(f"/admin/auth/user/{user.pk}/change/")
    assert form.status_code == 200
    manager = Group.objects.get(name="manager")
    assert f'value="{manager.pk}"' in form.content.decode()
    response = client.post(
        f"/admin/auth/user/{user.pk}/change/",
        {
            "username": "erin",
            "email": "erin@soc.example",
            "is_active": "on",
            "groups": [str(manager.pk)],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "09:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "09:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert roles.can_read_reports(User.objects.get(pk=user.pk))


# --- suspending an agent -----------------------------------------------------------------


@pytest.fixture
def signed_in() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


def test_a_senior_analyst_suspends_an_agent_with_a_reason(
    signed_in: Callable[[User], Client], senior: User, agent_with_key: factories.AgentWithKey
) -> None:
    client = signed_in(senior)
    assert 'name="suspend" value="1"' in client.get("/agents/").content.decode()
    response = client.post(
        "/agents/triage-bot/suspend/",
        {"suspend": "1", "reason": "isolating laptops at random"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 204
    agent_with_key.agent.refresh_from_db()
    assert agent_with_key.agent.suspended
    assert agent_with_key.agent.suspended_reason == "isolating laptops at random"
    event = AuditEvent.objects.get(event_type="agent.suspended")
    assert event.actor == "sam"


def test_a_senior_analyst_cannot_resume_an_agent(
    signed_in: Callable[[User], Client], senior: User, agent_with_key: factories.AgentWithKey
) -> None:
    client = signed_in(senior)
    client.post("/agents/triage-bot/suspend/", {"suspend": "1", "reason": "misbehaving"})
    assert 'name="suspend" value="0"' not in client.get("/agents/").content.decode()
    client.post("/agents/triage-bot/suspend/", {"suspend": "0"})
    agent_with_key.agent.refresh_from_db()
    assert agent_with_key.agent.suspended
    assert not AuditEvent.objects.filter(event_type="agent.resumed").exists()


def test_a_suspension_needs_a_reason(
    signed_in: Callable[[User], Client], senior: User, agent_with_key: factories.AgentWithKey
) -> None:
    signed_in(senior).post("/agents/triage-bot/suspend/", {"suspend": "1", "reason": " "})
    agent_with_key.agent.refresh_from_db()
    assert not agent_with_key.agent.suspended
