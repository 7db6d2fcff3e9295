from __future__ import annotations

from django.contrib import admin

from soc_console.admin import ReadOnlyAdmin

from .models import AuditEvent, VerificationRun


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log is append-only: the admin can read it, never change it."""

    list_display = ("seq", "at", "event_type", "actor", "proposal_id")
    list_filter = ("event_type", "actor_type")
    search_fields = ("actor", "event_type", "proposal_id")


@admin.register(VerificationRun)
class VerificationRunAdmin(ReadOnlyAdmin):
    """Only verify_audit writes verification runs: an edited or added one would show on the
    audit page as the latest word on the chain."""

    list_display = ("at", "ok", "events", "bad_events", "first_bad_seq", "checkpoints", "seconds")
