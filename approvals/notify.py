"""Mail to people: escalations and failed executions go to the senior analysts."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from soc_console import roles

from .models import Execution, Proposal

logger = logging.getLogger(__name__)


def _senior_addresses() -> list[str]:
    users = (
        get_user_model()
        .objects.filter(groups__name__in=[roles.SENIOR], is_active=True)
        .exclude(email="")
    )
    return sorted(set(users.values_list("email", flat=True)))


def _send(subject: str, body: str) -> None:
    recipients = _senior_addresses()
    if not recipients:
        logger.warning("no senior analyst has an e-mail address: %s", subject)
        return
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=True)


def escalated(proposal_id: uuid.UUID) -> None:
    proposal = Proposal.objects.select_related("agent").get(pk=proposal_id)
    _send(
        f"[SOC] Escalated: {proposal.action} {proposal.target} is waiting for a decision",
        f"{proposal.agent.slug} proposed {proposal.action} on {proposal.target} "
        f"(confidence {proposal.confidence:.2f}, asset {proposal.criticality}).\n"
        f"No decision yet; it expires at {proposal.expires_at:%Y-%m-%d %H:%M %Z}.\n"
        f"{settings.PUBLIC_URL}/proposals/{proposal.id}/",
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
