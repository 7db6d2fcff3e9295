"""An agent's shadow policy: draft a candidate version and put it in shadow, read its score,
promote or discard it. Managers and admins only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from agents import catalogue
from agents.models import Agent, Criticality, Level, Policy, PolicyState
from agents.services import (
    PolicyContent,
    PolicyError,
    policy_shadow_discard,
    policy_shadow_start,
)
from soc_console import roles
from soc_console.errors import DomainError

from .. import services
from ..models import listed_agents
from ..selectors import shadow as scores
from .common import console_role


class ShadowForm(forms.Form):
    """A candidate version: a level and a budget per action, the thresholds and the asset
    tiers; the rest of the policy is the live version's."""

    auto_threshold = forms.FloatField(min_value=0.0, max_value=1.0, label="Auto threshold")
    review_threshold = forms.FloatField(min_value=0.0, max_value=1.0, label="Review threshold")
    scope_tiers = forms.MultipleChoiceField(
        choices=Criticality.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Asset tiers it may touch (none ticked: all)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for action in catalogue.ACTIONS:
            self.fields[f"level_{action}"] = forms.TypedChoiceField(
                choices=[(value, f"{value} · {name}") for value, name in Level.choices],
                coerce=int,
                label=action,
            )
            self.fields[f"runs_{action}"] = forms.IntegerField(
                min_value=0, max_value=100_000, label=f"{action}: automatic runs per hour"
            )
            self.fields[f"targets_{action}"] = forms.IntegerField(
                min_value=0, max_value=100_000, label=f"{action}: distinct targets per hour"
            )

    @classmethod
    def initial_from(cls, live: Policy | None) -> dict[str, Any]:
        content = PolicyContent.of(live)
        initial: dict[str, Any] = {
            "auto_threshold": content.fields.get("auto_threshold", 0.9),
            "review_threshold": content.fields.get("review_threshold", 0.5),
            "scope_tiers": content.fields.get("scope_tiers", []),
        }
        for action in catalogue.ACTIONS:
            runs, targets = content.budget(action)
            initial[f"level_{action}"] = content.grants.get(action, 0)
            initial[f"runs_{action}"] = runs
            initial[f"targets_{action}"] = targets
        return initial

    def rows(self) -> list[tuple[str, forms.BoundField, forms.BoundField, forms.BoundField]]:
        return [
            (action, self[f"level_{action}"], self[f"runs_{action}"], self[f"targets_{action}"])
            for action in catalogue.ACTIONS
        ]

    def policy_arguments(self, live: Policy | None) -> dict[str, Any]:
        """The service's arguments: a grant for every action the live policy grants or the
        draft gives a level above 0 (an action left at 0 and never granted stays absent)."""
        data = self.cleaned_data
        granted = PolicyContent.of(live).grants
        actions = [a for a in catalogue.ACTIONS if a in granted or data[f"level_{a}"] > 0]
        return {
            "grants": {a: data[f"level_{a}"] for a in actions},
            "budgets": {a: (data[f"runs_{a}"], data[f"targets_{a}"]) for a in actions},
            "auto_threshold": data["auto_threshold"],
            "review_threshold": data["review_threshold"],
            "scope_tiers": list(data["scope_tiers"]),
        }


def _page(
    request: HttpRequest, agent: Agent, *, form: ShadowForm | None = None, status: int = 200
) -> HttpResponse:
    shadow = scores.agent_shadow(agent)
    live = agent.current_policy
    score = scores.shadow_score(shadow) if shadow is not None else None
    if form is None and shadow is None:
        form = ShadowForm(initial=ShadowForm.initial_from(live))
    return render(
        request,
        "approvals/shadow.html",
        {
            "agent": agent,
            "live": live,
            "shadow": shadow,
            "score": score,
            "changes": _changes(live, shadow) if shadow is not None else [],
            "form": form,
            "definitions": scores.DEFINITIONS,
            "worst": [(scores.LABELS[kind], p) for kind, p in score.worst] if score else [],
            "can_change": roles.can_change_autonomy(request.user),
            "past": agent.policies.filter(
                state__in=(PolicyState.PROMOTED, PolicyState.DISCARDED)
            ).order_by("-version"),
        },
        status=status,
    )


def _changes(live: Policy | None, shadow: Policy) -> list[tuple[str, str, str]]:
    """What the shadow changes from the live version: (what, live, shadow)."""
    before, after = PolicyContent.of(live), PolicyContent.of(shadow)
    changes = []
    for action in sorted(set(before.grants) | set(after.grants)):
        was, now = before.grants.get(action, 0), after.grants.get(action, 0)
        if was != now:
            changes.append((f"level of {action}", str(was), str(now)))
        if before.budget(action) != after.budget(action) and now:
            changes.append(
                (
                    f"budget of {action}",
                    "{}/{}".format(*before.budget(action)),
                    "{}/{}".format(*after.budget(action)),
                )
            )
    for name in ("auto_threshold", "review_threshold", "scope_tiers", "scope_groups"):
        was, now = before.fields.get(name), after.fields.get(name)
        if was != now:
            changes.append((name.replace("_", " "), str(was), str(now)))
    return changes


@require_GET
@console_role(roles.can_read_reports)
def shadow_page(request: HttpRequest, slug: str) -> HttpResponse:
    return _page(request, get_object_or_404(listed_agents(), slug=slug))


@require_POST
@console_role(roles.can_change_autonomy)
def shadow_start(request: HttpRequest, slug: str) -> HttpResponse:
    agent = get_object_or_404(listed_agents(), slug=slug)
    form = ShadowForm(request.POST)
    if not form.is_valid():
        return _page(request, agent, form=form, status=400)
    try:
        started = policy_shadow_start(
            agent=agent,
            by=request.user.get_username(),
            **form.policy_arguments(agent.current_policy),
        )
    except PolicyError as exc:
        form.add_error(None, str(exc))
        return _page(request, agent, form=form, status=400)
    except DomainError as exc:
        form.add_error(None, exc.detail)
        return _page(request, agent, form=form, status=409)
    messages.success(request, f"Version {started.version} of {slug} is in shadow.")
    return redirect("agent-shadow", slug)


def _on_shadow(
    request: HttpRequest, slug: str, *, verb: str, act: Callable[[Agent, int], str]
) -> HttpResponse:
    """Promote or discard the shadow version the form names: `act` does it and says what
    happened; a refusal is shown as an error. Either way, back to the agent's shadow page."""
    agent = get_object_or_404(listed_agents(), slug=slug)
    raw = request.POST.get("version", "")
    try:
        if not raw.isdigit():
            raise PolicyError(f"Say which shadow version to {verb}.")
        done = act(agent, int(raw))
    except (DomainError, PolicyError) as exc:
        messages.error(request, getattr(exc, "detail", str(exc)))
        return redirect("agent-shadow", slug)
    messages.success(request, done)
    return redirect("agent-shadow", slug)


@require_POST
@console_role(roles.can_change_autonomy)
def shadow_promote(request: HttpRequest, slug: str) -> HttpResponse:
    def promote(agent: Agent, version: int) -> str:
        live = services.shadow_promote(agent=agent, version=version, by=request.user.get_username())
        return f"Version {version} promoted: {slug} now decides under version {live.version}."

    return _on_shadow(request, slug, verb="promote", act=promote)


@require_POST
@console_role(roles.can_change_autonomy)
def shadow_discard(request: HttpRequest, slug: str) -> HttpResponse:
    def discard(agent: Agent, version: int) -> str:
        policy_shadow_discard(
            agent=agent,
            version=version,
            by=request.user.get_username(),
            reason=request.POST.get("reason", "")[:300],
        )
        return f"Version {version} of {slug} discarded; the live policy is unchanged."

    return _on_shadow(request, slug, verb="discard", act=discard)
