from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission

from . import keys, sql
from .models import Agent, ApiKey

# Writing last_used_at on every request would make each call a write; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass
class AgentPrincipal:
    """What `request.user` is for an agent: not a Django user, never a console user."""

    agent: Agent
    key: ApiKey
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def username(self) -> str:
        return f"agent:{self.agent.slug}"

    @property
    def pk(self) -> str:
        return self.username


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: HttpRequest) -> tuple[AgentPrincipal, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():  # a scheme is case-insensitive (RFC 9110)
            return None
        raw = raw.strip()
        prefix = keys.split_prefix(raw)
        if prefix is None:
            raise exceptions.AuthenticationFailed("Malformed API key.")
        key = sql.key_with_agent(prefix)
        if key is None or not keys.matches(raw, key.digest):
            raise exceptions.AuthenticationFailed("Unknown API key.")
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return AgentPrincipal(agent=key.agent, key=key), key

    def authenticate_header(self, request: HttpRequest) -> str:
        return 'Bearer realm="agents"'


class IsAgent(BasePermission):
    audience = "agents"  # the schema lists only the agent API key for these calls
    message = "This call is for agents: authenticate with 'Authorization: Bearer <api key>'."

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.user, AgentPrincipal)
