"""The analysts' console: thin views over selectors (reads) and services (changes)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from agents.models import Agent
from soc_console import roles
from soc_console.errors import DomainError

from . import catalogue, selectors, services


def console_role(check: Callable[[Any], bool] = roles.can_view_console) -> Callable:
    """Sign-in plus a role check on the server, whatever the page shows or hides."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied("Your role does not allow this.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _flash(request: HttpRequest, *, ok: bool, text: str, status: int = 200) -> HttpResponse:
    """An htmx request gets the message as a fragment; a plain form post gets a redirect."""
    if request.htmx:
        return render(request, "approvals/flash.html", {"ok": ok, "text": text}, status=status)
    (messages.success if ok else messages.error)(request, text)
    return redirect(request.POST.get("next") or request.META.get("HTTP_REFERER") or "/")


def _run(request: HttpRequest, action: Callable[[], Any], success: str) -> HttpResponse:
    try:
        action()
    except DomainError as exc:
        return _flash(request, ok=False, text=exc.detail, status=200 if request.htmx else 302)
    return _flash(request, ok=True, text=success)


@require_GET
@console_role()
def queue(request: HttpRequest) -> HttpResponse:
    context = {
        "cards": selectors.pending_queue(),
        "counters": selectors.queue_counters(),
        "page_size": settings.QUEUE_PAGE_SIZE,
    }
    template = "approvals/queue.html#queue" if request.htmx else "approvals/queue.html"
    return render(request, template, context)


@require_GET
@console_role()
def stop_banner(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/stop_banner.html", {"oob": False})


@require_POST
@console_role(roles.can_decide)
def decide(request: HttpRequest, proposal_id: str) -> HttpResponse:
    verdict = request.POST.get("verdict")
    reason = request.POST.get("reason", "")
    seconds = request.POST.get("seconds_on_card")
    if verdict == "approve":
        return _run(
            request,
            lambda: services.proposal_approve(
                proposal_id=proposal_id,
                analyst=request.user,
                reason=reason,
                seconds_on_card=seconds,
            ),
            "Approved.",
        )
    if verdict == "reject":
        return _run(
            request,
            lambda: services.proposal_reject(
                proposal_id=proposal_id,
                analyst=request.user,
                reason=reason,
                seconds_on_card=seconds,
            ),
            "Rejected.",
        )
    return _flash(request, ok=False, text="Choose approve or reject.")


@require_GET
@console_role()
def proposal_page(request: HttpRequest, proposal_id: str) -> HttpResponse:
    proposal = selectors.proposal_detail(proposal_id)
    if proposal is None:
        raise Http404("No such proposal.")
    card = selectors.card_for(proposal)
    return render(
        request,
        "approvals/proposal.html",
        {
            "card": card,
            "proposal": proposal,
            "timeline": selectors.proposal_timeline(proposal.pk),
            "reversible": bool(card.action and card.action.reversible),
        },
    )


@require_POST
@console_role(roles.can_decide)
def rollback(request: HttpRequest, proposal_id: str) -> HttpResponse:
    proposal = selectors.proposal_detail(proposal_id)
    execution = selectors.execution_of(proposal) if proposal else None
    if execution is None:
        return _flash(request, ok=False, text="Nothing to roll back.")
    return _run(
        request,
        lambda: services.rollback_request(
            execution_id=execution.pk, analyst=request.user, reason=request.POST.get("reason", "")
        ),
        "Rollback requested.",
    )


@require_POST
@console_role(roles.can_decide)
def confirm_review(request: HttpRequest, proposal_id: str) -> HttpResponse:
    return _run(
        request,
        lambda: services.proposal_review_confirm(
            proposal_id=proposal_id, analyst=request.user, note=request.POST.get("note", "")
        ),
        "Confirmed.",
    )


@require_POST
@console_role(roles.can_decide)
def release_held(request: HttpRequest, execution_id: str) -> HttpResponse:
    return _run(
        request,
        lambda: services.execution_confirm_held(execution_id=execution_id, analyst=request.user),
        "Re-confirmed: it runs now.",
    )


@require_GET
@console_role()
def work_lists(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "approvals/lists.html",
        {
            "held": selectors.held_executions()[:200],
            "auto": selectors.unreviewed_auto()[:200],
            "failed": selectors.failed_executions()[:200],
            "flagged": selectors.flagged_proposals()[:200],
        },
    )


@require_POST
@console_role(roles.can_stop)
def emergency_stop(request: HttpRequest) -> HttpResponse:
    reason = request.POST.get("reason", "")
    if request.POST.get("engage") == "1":
        return _run(
            request,
            lambda: services.emergency_stop_engage(by=request.user, reason=reason),
            "Emergency stop engaged: nothing runs until it is lifted.",
        )
    return _run(
        request,
        lambda: services.emergency_stop_release(by=request.user, reason=reason),
        "Emergency stop lifted. Held executions wait for re-confirmation.",
    )


@require_GET
@console_role()
def agents_page(request: HttpRequest) -> HttpResponse:
    from audit import selectors as audit_selectors

    agents = Agent.objects.prefetch_related("keys", "policies__grants").order_by("slug")
    records = audit_selectors.agent_track_records()
    rows = [
        {
            "agent": agent,
            "policy": agent.current_policy,
            "keys": list(agent.keys.all()),
            "record": records.get(agent.pk),
        }
        for agent in agents
    ]
    return render(
        request,
        "approvals/agents.html",
        {"rows": rows, "actions": catalogue.ACTIONS, "can_manage": roles.can_stop(request.user)},
    )


@require_POST
@console_role(roles.can_stop)
def agent_suspend(request: HttpRequest, slug: str) -> HttpResponse:
    agent = get_object_or_404(Agent, slug=slug)
    if request.POST.get("suspend") == "1":
        return _run(
            request,
            lambda: services.agent_suspend(
                agent=agent, by=request.user, reason=request.POST.get("reason", "")
            ),
            f"{agent.slug} suspended.",
        )
    return _run(
        request, lambda: services.agent_resume(agent=agent, by=request.user), f"{slug} resumed."
    )
