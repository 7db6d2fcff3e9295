"""Console accounts: role grants and sign-in lockouts, each with its audit event.

Roles are Django groups (soc_console/roles.py), created by migration approvals/0002. Sign-in
throttling is django-axes (settings: AXES_*); this module tells it which address to count and
what a refused sign-in sees, and records each lockout in the audit log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from audit import log
from soc_console import roles
from soc_console.errors import InvalidInput, NotFound

SYSTEM = "system"


@transaction.atomic
def role_grant(*, username: str, role: str, by: str) -> bool:
    """Give a user a console role. False when they have it already: nothing changes then."""
    if role not in roles.ALL:
        raise InvalidInput(f"Unknown role {role!r}: the roles are {', '.join(roles.ALL)}.")
    user = User.objects.select_for_update().filter(username=username).first()
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    # The migration created the group; an admin may have deleted it since.
    group, _ = Group.objects.get_or_create(name=role)
    if user.groups.filter(pk=group.pk).exists():
        return False
    user.groups.add(group)
    log.record(event_type="role.granted", actor=by, data={"user": username, "role": role})
    return True


@transaction.atomic
def signin_lockout_record(*, username: str | None, address: str | None, failures: int) -> None:
    """Record that sign-in is now refused for a username or an address."""
    until = timezone.now() + settings.AXES_COOLOFF_TIME
    log.record(
        event_type="signin.locked_out",
        actor=SYSTEM,
        actor_type="system",
        data={
            # As typed on the sign-in form, which anyone can fill with anything: kept short.
            "username": (username or "")[:150],
            "address": address or "",
            "failures": failures,
            "until": until.isoformat(),
        },
    )


def on_user_locked_out(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kw: Any
) -> None:
    """django-axes' user_locked_out signal: it fires on the failure that locks, and again on
    every attempt refused during the lockout. Only the first is a new lockout, and only that
    one carries the failure count (a refused attempt is not counted)."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:
        return
    signin_lockout_record(username=username, address=ip_address, failures=failures)


def client_address(request: HttpRequest) -> str | None:
    """The address a sign-in is counted under: the peer the server saw, never a header the
    client wrote (the web server rewrites it from trusted proxies' X-Forwarded-For)."""
    return request.META.get("REMOTE_ADDR")


def lockout_minutes() -> int:
    cooloff: timedelta = settings.AXES_COOLOFF_TIME
    return max(1, round(cooloff.total_seconds() / 60))


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """The sign-in page, saying why it refuses; 429 like any other limit."""
    minutes = lockout_minutes()
    message = (
        f"Too many failed sign-ins for this username or from this address: sign-in is refused "
        f"for {minutes} minute{'s' if minutes != 1 else ''}. Try again later, or ask an admin."
    )
    return render(
        request,
        "registration/login.html",
        {"locked_out": message, "next": request.POST.get("next", "")},
        status=429,
    )
