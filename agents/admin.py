from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from . import demotion, grants, services
from .models import (
    DEFAULT_AUTO_PER_HOUR,
    DEFAULT_TARGETS_PER_HOUR,
    Agent,
    ApiKey,
    Asset,
    EmergencyStop,
    Policy,
)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "suspended", "created_at")
    search_fields = ("slug", "name")
    # Suspension goes through the audited service (the console's agent page), never a raw save.
    # Suspension and the callback go through audited services (the console's agent page, the
    # agent API, create_agent), never a raw save.
    readonly_fields = ("suspended", "suspended_reason", "callback_url", "created_at")
    exclude = ("callback_secret",)
    actions = ["issue_key"]

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new agent gets policy v1 (no grants: everything manual until an admin grants it)
        # and its first key, through the same service as create_agent.
        agent, issued = services.agent_register(
            slug=obj.slug,
            by=request.user.get_username(),
            name=obj.name,
            description=obj.description,
        )
        obj.pk = agent.pk
        self.message_user(
            request, f"{agent.slug}: API key {issued.raw} — copy it now", messages.WARNING
        )

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

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: a deleted key leaves no trace

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(
            services.apikey_revoke(key=key, by=request.user.get_username()) for key in queryset
        )
        self.message_user(request, f"Revoked {revoked} key(s).")


def _lines_field(label: str, *, rows: int, help_text: str) -> forms.CharField:
    """An optional text box read one entry per line."""
    box = forms.Textarea(attrs={"rows": rows})
    return forms.CharField(label=label, required=False, widget=box, help_text=help_text)


class PolicyForm(forms.ModelForm):
    grants_text = _lines_field(
        "Grants",
        rows=4,
        help_text=f"One ACTION=LEVEL per line ({grants.levels_help()}). "
        "Actions left out keep their level from the previous version.",
    )
    budgets_text = _lines_field(
        "Blast-radius budgets",
        rows=3,
        help_text="One ACTION=RUNS/TARGETS per line: at most RUNS automatic executions of the "
        "action per hour, on at most TARGETS distinct targets; beyond that a proposal waits "
        "for an analyst (budget_exhausted). Actions left out keep their budget (default "
        f"{DEFAULT_AUTO_PER_HOUR}/{DEFAULT_TARGETS_PER_HOUR}).",
    )
    demotions_text = _lines_field(
        "Demotion rules",
        rows=4,
        help_text="One ACTION: key=value … per line, for example "
        f"{grants.DEMOTION_EXAMPLE}. When a rule fires, a new version drops the grant to "
        "level `to` at once (never raises it): more than `above` % of the last `last` "
        "executions failed or were rolled back (last=0: off); an analyst rejected a proposal at "
        "or above the auto threshold (over_confidence); an analyst rolled back an automatic "
        "action (automatic_rollback). Keys and actions left out carry over; the default is "
        f"{demotion.describe(demotion.DEFAULT_RULES)}.",
    )

    class Meta:
        model = Policy
        fields = ["agent", *services.POLICY_FIELDS]

    # Left empty, a limit carries over from the current version (policy_publish), as a grant
    # left out does.
    CARRIED_OVER = ("max_pending", "max_proposals_per_minute")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.CARRIED_OVER:
            self.fields[name].required = False
        if self.instance.pk:
            self.fields["grants_text"].initial = "\n".join(
                f"{g.action}={g.level}" for g in self.instance.grants.all()
            )
            self.fields["budgets_text"].initial = "\n".join(
                f"{g.action}={g.max_auto_per_hour}/{g.max_targets_per_hour}"
                for g in self.instance.grants.all()
            )
            self.fields["demotions_text"].initial = "\n".join(
                grants.format_demotion(g.action, demotion.rules_of(g).as_dict())
                for g in self.instance.grants.all()
            )

    def clean_grants_text(self) -> dict[str, int]:
        try:
            return grants.parse_grants(self.cleaned_data.get("grants_text", ""))
        except grants.GrantError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_budgets_text(self) -> dict[str, tuple[int, int]]:
        try:
            return grants.parse_budgets(self.cleaned_data.get("budgets_text", ""))
        except grants.GrantError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_demotions_text(self) -> dict[str, dict[str, int | bool]]:
        try:
            return grants.parse_demotions(self.cleaned_data.get("demotions_text", ""))
        except grants.GrantError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    """Policies are versioned: saving an edited policy publishes a new live version. Shadow
    versions are drafted, promoted and discarded on the agent's shadow page."""

    form = PolicyForm
    list_display = ("agent", "version", "state", "auto_threshold", "review_threshold", "created_at")
    list_filter = ("agent", "state")
    readonly_fields = ("version", "state", "created_at", "created_by")

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in services.POLICY_FIELDS}
        for name in PolicyForm.CARRIED_OVER:
            if fields[name] is None:
                del fields[name]
        try:
            published = services.policy_publish(
                agent=form.cleaned_data["agent"],
                grants=form.cleaned_data["grants_text"],
                budgets=form.cleaned_data["budgets_text"],
                demotions=form.cleaned_data["demotions_text"],
                by=request.user.get_username(),
                **fields,
            )
        except services.PolicyError as exc:
            raise ValidationError(str(exc)) from exc
        obj.pk = published.pk
        obj.version = published.version
        self.message_user(request, f"Published {published}.")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # proposals keep the version they were judged under


class AssetForm(forms.ModelForm):
    aliases_text = _lines_field(
        "Aliases",
        rows=4,
        help_text="Other names the asset is known by, one per line: host names, addresses or "
        "networks, user principals, CORP\\user or bare user names. They are stored in "
        "canonical form; any spelling of any of them matches this asset.",
    )

    class Meta:
        model = Asset
        fields = ["kind", "identifier", "criticality", "group", "owner", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["aliases_text"].initial = "\n".join(
                self.instance.aliases.filter(primary=False).values_list("value", flat=True)
            )

    def clean_aliases_text(self) -> list[str]:
        text = self.cleaned_data.get("aliases_text", "")
        return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind, identifier = cleaned.get("kind"), cleaned.get("identifier")
        if kind and identifier and "aliases_text" in cleaned:
            try:
                services.asset_names(
                    kind=kind, identifier=identifier, aliases=cleaned["aliases_text"]
                )
            except services.AssetError as exc:
                self.add_error("aliases_text" if exc.field == "aliases" else exc.field, str(exc))
        return cleaned


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    form = AssetForm
    list_display = ("identifier", "kind", "criticality", "group", "owner", "alias_list")
    list_filter = ("kind", "criticality", "group")
    search_fields = ("identifier", "owner", "description", "aliases__value")
    actions = None  # bulk delete would skip the audit trail

    def get_queryset(self, request: HttpRequest) -> QuerySet[Asset]:
        return super().get_queryset(request).prefetch_related("aliases")

    @admin.display(description="aliases")
    def alias_list(self, obj: Asset) -> str:
        return ", ".join(a.value for a in obj.aliases.all() if not a.primary)

    def save_model(self, request: HttpRequest, obj: Asset, form: Any, change: bool) -> None:
        services.asset_save(
            asset=obj, by=request.user.get_username(), aliases=form.cleaned_data["aliases_text"]
        )

    def delete_model(self, request: HttpRequest, obj: Asset) -> None:
        services.asset_delete(asset=obj, by=request.user.get_username())


@admin.register(EmergencyStop)
class EmergencyStopAdmin(admin.ModelAdmin):
    """Read-only: the stop is pulled and lifted in the console, where it is audited and shown
    live to every analyst."""

    list_display = ("engaged", "reason", "changed_by", "changed_at")
    readonly_fields = ("engaged", "reason", "changed_by", "changed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
