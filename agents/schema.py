"""Credentials in the OpenAPI schema: the agent API key is a Bearer scheme the docs page offers
under Authorize, and each operation lists only the credentials its permission admits."""

from __future__ import annotations

from typing import Any

from drf_spectacular.authentication import SessionScheme, TokenScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


def _audiences(auto_schema: Any) -> set[str]:
    """Who the view's permissions admit, as they declare it (`audience`); empty: anyone."""
    classes = getattr(auto_schema.view, "permission_classes", [])
    return {audience for p in classes if (audience := getattr(p, "audience", None))}


def _admits(auto_schema: Any, audience: str) -> bool:
    audiences = _audiences(auto_schema)
    return not audiences or audience in audiences


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.ApiKeyAuthentication"
    name = "agentApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent's API key, as `manage.py create_agent` prints it once: "
            "`Authorization: Bearer <key>`.",
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]] | None:
        return {self.name: []} if _admits(auto_schema, "agents") else None


class AnalystTokenScheme(TokenScheme):
    priority = 1

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]] | None:
        return {self.name: []} if _admits(auto_schema, "analysts") else None


class AnalystSessionScheme(SessionScheme):
    priority = 1

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]] | None:
        return {self.name: []} if _admits(auto_schema, "analysts") else None
