from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEvent, VerificationRun


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("seq", "at", "event_type", "actor", "proposal_id")
    list_filter = ("event_type", "actor_type")
    search_fields = ("actor", "event_type", "proposal_id")

    # The audit log is append-only: the admin can read it, never change it.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(VerificationRun)
class VerificationRunAdmin(admin.ModelAdmin):
    list_display = ("at", "ok", "events", "first_bad_seq", "seconds")
