"""The agents page and the emergency stop: suspend, clear a queue, engage or lift the stop."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agents import catalogue, demotion
from agents.models import Agent, Grant, Policy
from soc_console import roles
from soc_console.errors import DomainError

from .. import selectors, services
from ..models import listed_agents
from .common import console_role, flash, run


@require_POST
@console_role(roles.can_stop)
def emergency_stop(request: HttpRequest) -> HttpResponse:
    reason = request.POST.get("reason", "")
    if request.POST.get("engage") == "1":
        return run(
            request,
            lambda: services.emergency_stop_engage(by=request.user, reason=reason),
            "Emergency stop engaged: nothing runs until it is lifted.",
        )
    return run(
        request,
        lambda: services.emergency_stop_release(by=request.user, reason=reason),
        "Emergency stop lifted. Held executions wait for re-confirmation.",
    )


@require_GET
@console_role()
def agents_page(request: HttpRequest) -> HttpResponse:
    agents = listed_agents().prefetch_related("keys").order_by("slug")
    records = selectors.agent_track_records()
    pending = selectors.pending_by_agent()
    demotions = selectors.demotions_by_agent()
    rows = [
        {
            "agent": agent,
            "pending": pending.get(agent.pk, 0),
            "policy": policy,
            "grants": _grants_with_rules(policy),
            "shadow": agent.shadow_policy,
            "keys": list(agent.keys.all()),
            "record": records.get(agent.pk),
            "demotions": demotions.get(agent.slug, []),
        }
        for agent in agents
        for policy in [agent.current_policy]
    ]
    return render(
        request,
        "approvals/agents.html",
        {
            "rows": rows,
            "actions": catalogue.ACTIONS,
            "can_suspend": roles.can_suspend_agent(request.user),
            "can_resume": roles.can_stop(request.user),
        },
    )


def _grants_with_rules(policy: Policy | None) -> list[tuple[Grant, str]]:
    """Each grant with its demotion rules in words ("—" where a demotion cannot lower it)."""
    if policy is None:
        return []
    return [
        (grant, demotion.describe(rules) if grant.level > rules.to_level else "—")
        for grant in policy.grants.all()
        for rules in [demotion.rules_of(grant)]
    ]


@require_POST
@console_role(roles.can_suspend_agent)
def agent_clear(request: HttpRequest, slug: str) -> HttpResponse:
    """Withdraw every pending proposal of the agent on its behalf, with one reason."""
    agent = get_object_or_404(listed_agents(), slug=slug)
    try:
        report = services.agent_pending_clear(
            agent=agent, by=request.user, reason=request.POST.get("reason", "")
        )
    except DomainError as exc:
        return flash(request, ok=False, text=exc.detail)
    plural = "s" if report.cleared != 1 else ""
    text = (
        f"{report.cleared} pending proposal{plural} of {slug} cleared: withdrawn on the "
        "agent's behalf by you, with your reason; no analyst decided them."
    )
    if report.refused:
        first = next(iter(report.refused.values()))
        text += f" {len(report.refused)} refused (for example: {first})"
    return flash(request, ok=True, text=text)


@require_POST
@console_role(roles.can_suspend_agent)
def agent_suspend(request: HttpRequest, slug: str) -> HttpResponse:
    agent = get_object_or_404(listed_agents(), slug=slug)
    if request.POST.get("suspend") == "1":
        return run(
            request,
            lambda: services.agent_suspend(
                agent=agent, by=request.user, reason=request.POST.get("reason", "")
            ),
            f"{agent.slug} suspended.",
            refresh=True,
        )
    return run(
        request,
        lambda: services.agent_resume(agent=agent, by=request.user),
        _resumed,
        refresh=True,
    )


def _resumed(agent: Agent) -> str:
    """What a manager reads after Resume: with a warning when the agent is still at one of the
    circuit breaker's limits, since its next proposal would suspend it again at once."""
    policy = agent.current_policy
    reached = services.breaker_limit(agent.pk, policy, timezone.now()) if policy else None
    if reached is None:
        return f"{agent.slug} resumed."
    allowed = reached.limit["allowed"]
    if reached.limit["limit"] == "max_pending":
        # The breaker counts only up to its limit; the manager is told the whole count.
        pending = selectors.pending_by_agent().get(agent.pk, 0)
        where = "at" if pending <= allowed else "over"
        return (
            f"{agent.slug} resumed, but it still has {pending} pending proposals, {where} its "
            f"limit of {allowed}: its next proposal suspends it again. Clear its pending "
            "proposals (or raise its limit) first."
        )
    return (
        f"{agent.slug} resumed, but it sent {allowed} or more proposals in the last minute, its "
        f"limit for a minute: a proposal within the minute suspends it again. Stop what floods "
        "it (or raise its limit) first."
    )
