from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from soc_console import roles
from soc_console.admin import ReadOnlyAdmin

from .models import AttentionCheck, ConnectorCall, ConnectorState, Team
from .services import attention


@admin.register(ConnectorState)
class ConnectorStateAdmin(ReadOnlyAdmin):
    """What the simulated systems hold now: blocked IPs, isolated hosts, disabled users…"""

    list_display = ("connector", "target", "state", "updated_at")
    list_filter = ("connector",)
    search_fields = ("target",)


@admin.register(ConnectorCall)
class ConnectorCallAdmin(ReadOnlyAdmin):
    """The simulated systems' ledger: one row per idempotency key."""

    list_display = ("at", "connector", "operation", "target", "idempotency_key")
    list_filter = ("connector", "operation")
    search_fields = ("target", "idempotency_key")


class _ManagersEdit:
    """Managers and admins set teams up; the admin's own permissions are not needed for it."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return roles.can_stop(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return roles.can_stop(request.user)


@admin.register(Team)
class TeamAdmin(_ManagersEdit, admin.ModelAdmin):
    """Teams, and their attention checks: on or off, and one check per how many decisions."""

    list_display = ("name", "attention_checks", "check_every", "created_at")
    list_editable = ("attention_checks", "check_every")
    filter_horizontal = ("members",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return roles.can_stop(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return roles.can_stop(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # turn its checks off instead: its past checks keep their team

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # After the members: the event records the team as saved, in the admin's transaction.
        super().save_related(request, form, formsets, change)
        attention.team_recorded(team=form.instance, by=request.user, created=not change)


@admin.register(AttentionCheck)
class AttentionCheckAdmin(_ManagersEdit, ReadOnlyAdmin):
    """The checks the console inserted and how each ended; the services write them."""

    list_display = ("created_at", "team", "shown_agent", "flaw", "outcome", "analyst")
    list_filter = ("outcome", "flaw", "team")
