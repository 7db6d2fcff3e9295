"""Mail to people: escalations (a digest per window) and failed executions go to the senior
analysts; an agent's suspension goes to the managers, who alone may resume it."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection, send_mail

from agents.demotion import in_words
from soc_console import roles

from .models import Execution, Proposal

logger = logging.getLogger(__name__)


def _addresses(role: str) -> list[str]:
    users = (
        get_user_model().objects.filter(groups__name__in=[role], is_active=True).exclude(email="")
    )
    return sorted(set(users.values_list("email", flat=True)))


def _senior_addresses() -> list[str]:
    return _addresses(roles.SENIOR)


def senior_recipients() -> list[str]:
    """Who the escalation digest goes to (the sweep records them with the digest)."""
    return _senior_addresses()


def _send(subject: str, body: str) -> None:
    recipients = _senior_addresses()
    if not recipients:
        logger.warning("no senior analyst has an e-mail address: %s", subject)
        return
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=True)


def escalation_digest(proposal_ids: list[uuid.UUID], recipients: list[str]) -> None:
    """One mail to each recipient listing the proposals escalated in this window: a storm of
    escalations is one mail per senior per ESCALATION_DIGEST_MINUTES, not one per proposal."""
    proposals = list(
        Proposal.objects.select_related("agent")
        .filter(pk__in=proposal_ids)
        .order_by("-priority", "created_at")
    )
    if not proposals or not recipients:
        if not recipients:
            logger.warning("no senior analyst has an e-mail address: %d escalated", len(proposals))
        return
    agents = sorted({p.agent.slug for p in proposals})
    subject = (
        f"[SOC] {len(proposals)} escalated proposal{'s' if len(proposals) != 1 else ''} "
        f"waiting for a decision ({', '.join(agents[:3])}{', …' if len(agents) > 3 else ''})"
    )
    lines = [
        f"- {p.agent.slug}: {p.action} {p.target} (confidence {p.confidence:.2f}, asset "
        f"{p.criticality}){_expiry(p)}\n  {settings.PUBLIC_URL}/proposals/{p.id}/"
        for p in proposals
    ]
    body = (
        f"No decision yet on these {len(proposals)} proposals, escalated since the last "
        f"digest (one every {settings.ESCALATION_DIGEST_MINUTES} min at most):\n\n"
        + "\n".join(lines)
        + f"\n\nThe queue: {settings.PUBLIC_URL}/\n"
    )
    messages = [
        EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
        for address in recipients
    ]
    get_connection(fail_silently=True).send_messages(messages)


def _expiry(proposal: Proposal) -> str:
    if proposal.expires_at is None:
        return ""
    return f", expires {proposal.expires_at:%Y-%m-%d %H:%M %Z}"


def agent_suspended(*, slug: str, reason: str, by: str) -> None:
    """Tell the managers, once per suspension: they decide when the agent may resume."""
    recipients = _addresses(roles.MANAGER)
    if not recipients:
        logger.warning("no manager has an e-mail address: %s suspended", slug)
        return
    who = "by its circuit breaker" if by == "system" else f"by {by}"
    send_mail(
        f"[SOC] Agent {slug} suspended {who}",
        f"{slug} was suspended {who}: {reason}\n"
        f"Its proposals are refused and its queued actions held until a manager resumes it; "
        f"its pending proposals can be rejected at once from {settings.PUBLIC_URL}/agents/\n",
        settings.DEFAULT_FROM_EMAIL,
        recipients,
        fail_silently=True,
    )


def grant_demoted(data: dict[str, Any], *, seq: int) -> None:
    """Tell the managers, once per demotion: promotion back is theirs to decide, on evidence."""
    recipients = _addresses(roles.MANAGER)
    agent, action = data["agent"], data["action"]
    if not recipients:
        logger.warning("no manager has an e-mail address: %s demoted on %s", agent, action)
        return
    url = settings.PUBLIC_URL
    evidence = data.get("evidence") or {}
    lines = [
        f"{agent} was demoted on {action}, from level {data['from_level']} to level "
        f"{data['to_level']}, in policy version {data['policy_version']} (was "
        f"v{data['previous_version']}): {in_words(data)}.",
        "",
        f"The evidence, as audited: {url}/audit/events/{seq}/",
    ]
    if evidence.get("proposal"):
        lines.append(f"The proposal that fired it: {url}/proposals/{evidence['proposal']}/")
    held = data.get("held_executions") or []
    if held:
        lines.append(
            f"{len(held)} queued automatic action{'s' if len(held) != 1 else ''} held for an "
            f"analyst's re-confirmation: {url}/lists/#held-executions"
        )
    lines += [
        "",
        "Promotion back is never automatic. Read the evidence and the agent's readiness and "
        f"shadow scores at {url}/agents/{agent}/ ; to try the old level again, put it in a "
        "shadow policy first, and publish it when its score earns it.",
    ]
    send_mail(
        f"[SOC] {agent} demoted on {action}: level {data['from_level']} → {data['to_level']}",
        "\n".join(lines) + "\n",
        settings.DEFAULT_FROM_EMAIL,
        recipients,
        fail_silently=True,
    )


def execution_failed(execution_id: uuid.UUID) -> None:
    execution = Execution.objects.select_related("proposal__agent").get(pk=execution_id)
    proposal = execution.proposal
    _send(
        f"[SOC] Execution failed: {proposal.action} {proposal.target}",
        f"The approved action {proposal.action} on {proposal.target} ended "
        f"{execution.get_status_display().lower()} after {execution.attempts} attempt(s):\n"
        f"{execution.error}\n{settings.PUBLIC_URL}/proposals/{proposal.id}/",
    )
