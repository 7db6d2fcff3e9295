"""Sign-in throttling: ten failures for a username, or from an address, within the window lock
that username or address out for the window; the lockout is audited and said on the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.test import Client

from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
PASSWORD = "pass-for-tests"  # tests.factories.user's default
LOCKED = "Too many failed sign-ins for this username or from this address"


def _sign_in(username: str, password: str, address: str) -> tuple[int, str, bool]:
    """One attempt from a fresh browser: status, page text, and whether it signed in."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": username, "password": password})
    signed_in = "_auth_user_id" in client.session
    return response.status_code, response.content.decode(), signed_in


def _lockouts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="signin.locked_out"))


def _move_clock(minutes: float) -> None:
    """As if the failures happened `minutes` earlier."""
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= timedelta(minutes=minutes)
        attempt.save(update_fields=["attempt_time"])


def test_fifty_wrong_passwords_then_the_right_one_is_refused() -> None:
    factories.user("alice")
    for n in range(50):
        status, page, signed_in = _sign_in("alice", f"guess-{n}", "203.0.113.5")
        assert not signed_in
        if n < 9:
            assert status == 200 and "Wrong username or password." in page
        else:
            assert status == 429 and LOCKED in page and "refused for 15 minutes" in page
    status, page, signed_in = _sign_in("alice", PASSWORD, "203.0.113.5")
    assert not signed_in
    assert status == 429 and LOCKED in page

    # One lockout, one audit event: the refused attempts during it add none.
    [event] = _lockouts()
    assert event.actor == "system"
    assert event.data["username"] == "alice"
    assert event.data["address"] == "203.0.113.5"
    assert event.data["failures"] == 10


def test_the_username_is_locked_from_every_address() -> None:
    factories.user("alice")
    for n in range(10):
        _sign_in("alice", f"guess-{n}", f"198.51.100.{n}")  # a botnet: one try per address
    status, page, signed_in = _sign_in("alice", PASSWORD, "192.0.2.77")
    assert (status, signed_in) == (429, False) and LOCKED in page


def test_the_address_is_locked_for_every_username() -> None:
    factories.user("alice")
    factories.user("bob")
    for n in range(10):
        _sign_in(f"someone-{n}", "guess", "203.0.113.9")  # spraying usernames
    status, _, signed_in = _sign_in("bob", PASSWORD, "203.0.113.9")
    assert (status, signed_in) == (429, False)


def test_another_user_from_another_address_is_unaffected() -> None:
    factories.user("alice")
    factories.user("bob")
    for n in range(50):
        _sign_in("alice", f"guess-{n}", "203.0.113.5")
    status, _, signed_in = _sign_in("bob", PASSWORD, "192.0.2.10")
    assert status == 302 and signed_in


def test_nine_failures_do_not_lock() -> None:
    factories.user("alice")
    for n in range(9):
        _sign_in("alice", f"guess-{n}", "203.0.113.5")
    _, _, signed_in = _sign_in("alice", PASSWORD, "203.0.113.5")
    assert signed_in
    assert _lockouts() == []


def test_the_lockout_lasts_its_window_and_then_sign_in_works() -> None:
    factories.user("alice")
    for n in range(12):
        _sign_in("alice", f"guess-{n}", "203.0.113.5")
    _move_clock(14)
    status, _, signed_in = _sign_in("alice", PASSWORD, "203.0.113.5")
    assert (status, signed_in) == (429, False)
    _move_clock(2)  # 16 minutes after the failures
    status, _, signed_in = _sign_in("alice", PASSWORD, "203.0.113.5")
    assert status == 302 and signed_in


def test_the_window_is_a_setting(settings) -> None:
    settings.AXES_COOLOFF_TIME = timedelta(minutes=2)
    factories.user("alice")
    for n in range(10):
        _sign_in("alice", f"guess-{n}", "203.0.113.5")
    status, page, _ = _sign_in("alice", PASSWORD, "203.0.113.5")
    assert status == 429 and "refused for 2 minutes" in page
    _move_clock(2.5)
    assert _sign_in("alice", PASSWORD, "203.0.113.5")[2]


def test_failures_older_than_the_window_do_not_count() -> None:
    factories.user("alice")
    for n in range(9):
        _sign_in("alice", f"guess-{n}", "203.0.113.5")
    _move_clock(16)
    for n in range(9):
        _sign_in("alice", f"again-{n}", "203.0.113.5")
    assert _sign_in("alice", PASSWORD, "203.0.113.5")[2]


def test_a_forged_forwarded_for_header_does_not_change_the_address_counted() -> None:
    for n in range(10):
        Client(REMOTE_ADDR="203.0.113.5").post(
            LOGIN,
            {"username": f"someone-{n}", "password": "guess"},
            HTTP_X_FORWARDED_FOR=f"10.9.8.{n}",
        )
    User.objects.create_user("carol", password=PASSWORD)
    status, _, signed_in = _sign_in("carol", PASSWORD, "203.0.113.5")
    assert (status, signed_in) == (429, False)


def test_the_admin_sign_in_is_throttled_too() -> None:
    User.objects.create_superuser("root", "root@soc.example", PASSWORD)
    for n in range(10):
        Client(REMOTE_ADDR="203.0.113.5").post(
            "/admin/login/", {"username": "root", "password": f"guess-{n}"}
        )
    client = Client(REMOTE_ADDR="192.0.2.1")
    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
