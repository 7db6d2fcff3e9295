"""Console accounts: role grants, roles from the identity provider at sign-in, and sign-in
lockouts, each with its audit event.

Roles are Django groups (soc_console/roles.py), created by migration approvals/0002. Sign-in
throttling is django-axes (settings: AXES_*); this module tells it which address to count and
what a refused sign-in sees, and records each lockout in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
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


@dataclass(frozen=True)
class SigninResult:
    """What a sign-in through the identity provider came to: the user, or why not."""

    user: User | None
    refusal: str = ""


@transaction.atomic
def signin_roles_apply(
    *, username: str, email: str, roles_given: frozenset[str], provider_groups: list[str]
) -> SigninResult:
    """Make a user's console roles exactly those the provider's groups give, at sign-in.

    The provider is the source of roles: a role its groups no longer give is taken away, also
    one granted here by hand. A user with no role at all is refused (and keeps none), rather
    than let into a console where every page would refuse them; one not yet known here is not
    created then. One audit event when anything changed or the sign-in was refused.
    """
    user = User.objects.select_for_update().filter(username=username).first()
    if user is None and roles_given:
        # get_or_create: two first sign-ins at once make one user, not an IntegrityError.
        user, _ = User.objects.get_or_create(
            username=username, defaults={"email": email, "password": make_password(None)}
        )
    held = (
        frozenset(user.groups.filter(name__in=roles.ALL).values_list("name", flat=True))
        if user is not None
        else frozenset()
    )
    granted, revoked = sorted(roles_given - held), sorted(held - roles_given)
    if user is not None and (granted or revoked):
        user.groups.remove(*Group.objects.filter(name__in=revoked))
        # The migration created the groups; an admin may have deleted one since.
        user.groups.add(*(Group.objects.get_or_create(name=role)[0] for role in granted))
        user._soc_roles = None  # roles.names caches them on the object
    refusal = ""
    if not roles_given:
        refusal = "no_role"
    elif user is not None and not user.is_active:
        refusal = "inactive"
    if refusal:
        log.record(
            event_type="signin.refused",
            actor=username,
            data={
                "user": username,
                "reason": refusal,
                # As the provider sent them; kept short, as anything a client controls.
                "provider_groups": [group[:200] for group in provider_groups[:50]],
                "granted": granted,
                "revoked": revoked,
            },
        )
        return SigninResult(user=None, refusal=refusal)
    if granted or revoked:
        log.record(
            event_type="role.synced",
            actor=username,
            data={
                "user": username,
                "roles": sorted(roles_given),
                "granted": granted,
                "revoked": revoked,
                "source": "oidc",
            },
        )
    return SigninResult(user=user)


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
    next_url = request.POST.get("next", "")
    return render(
        request,
        "registration/login.html",
        {"locked_out": message, "next": next_url, **signin_choices(next_url)},
        status=429,
    )


def signin_choices(next_url: str) -> dict[str, Any]:
    """What the sign-in page offers: the password form unless LOCAL_LOGIN is off, and the
    identity provider's button when single sign-on is on."""
    choices: dict[str, Any] = {"local_login": settings.LOCAL_LOGIN}
    if settings.OIDC_ENABLED:
        choices["sso_provider"] = settings.OIDC_PROVIDER_NAME
        choices["sso_url"] = reverse("oidc_authentication_init") + (
            f"?{urlencode({'next': next_url})}" if next_url else ""
        )
    return choices
