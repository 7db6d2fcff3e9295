from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents, policies and assets"

    def ready(self) -> None:
        from . import schema  # noqa: F401 - registers the API key with drf-spectacular
