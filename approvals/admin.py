from __future__ import annotations

from django.contrib import admin

from soc_console.admin import ReadOnlyAdmin

from .models import ConnectorCall, ConnectorState


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
