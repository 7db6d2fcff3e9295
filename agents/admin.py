from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .models import Agent, ApiKey, Asset, EmergencyStop, Grant, Policy


class GrantInline(admin.TabularInline):
    model = Grant
    extra = 0
    can_delete = False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "suspended", "created_at")
    search_fields = ("slug", "name")
    # Suspension goes through the audited service (the console's agent page), never a raw save.
    readonly_fields = ("suspended", "suspended_reason", "created_at")
    actions = ["issue_key"]

    @admin.action(description="Issue a new API key (shown once)")
    def issue_key(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            issued = services.apikey_issue(agent=agent, by=request.user.get_username())
            self.message_user(
                request, f"{agent.slug}: new key {issued.raw} — copy it now", messages.WARNING
            )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "agent", "label", "created_at", "last_used_at", "revoked_at")
    list_filter = ("agent",)
    readonly_fields = ("agent", "prefix", "digest", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are issued from the agent's page or create_agent

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(
            services.apikey_revoke(key=key, by=request.user.get_username()) for key in queryset
        )
        self.message_user(request, f"Revoked {revoked} key(s).")


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    """Policies are versioned: saving an edited policy publishes a new version."""

    list_display = ("agent", "version", "auto_threshold", "review_threshold", "created_at")
    list_filter = ("agent",)
    inlines = [GrantInline]
    readonly_fields = ("version", "created_at", "created_by")

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        fields = {
            name: form.cleaned_data[name]
            for name in services.POLICY_FIELDS
            if name in form.cleaned_data
        }
        published = services.policy_publish(
            agent=form.cleaned_data["agent"] if not change else obj.agent,
            by=request.user.get_username(),
            **fields,
        )
        obj.pk = published.pk
        obj.version = published.version

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("identifier", "kind", "criticality", "group", "owner")
    list_filter = ("kind", "criticality", "group")
    search_fields = ("identifier", "owner", "description")


@admin.register(EmergencyStop)
class EmergencyStopAdmin(admin.ModelAdmin):
    list_display = ("engaged", "reason", "changed_by", "changed_at")
    readonly_fields = ("engaged", "reason", "changed_by", "changed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
