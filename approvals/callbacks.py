"""HMAC-signed POSTs to an agent's callback URL on decision and on completion."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid

import httpx
from django.conf import settings

from agents.services import callback_address_problem

from .models import Proposal, ProposalStatus
from .selectors import proposal_payload

logger = logging.getLogger(__name__)


class DeliveryError(Exception):
    pass


def sign(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def schedule(*, proposal_id: uuid.UUID | str, event: str, countdown: float = 0) -> None:
    """Enqueue a delivery, unless the agent listens to nothing: most agents poll, and a task per
    event for them would only take worker time from the executions."""
    from . import tasks

    if Proposal.objects.filter(pk=proposal_id).exclude(agent__callback_url="").exists():
        tasks.deliver_callback.apply_async((str(proposal_id), event), countdown=countdown or None)


def deliver(*, proposal_id: str, event: str) -> int | None:
    """POST the event to the agent's callback URL; DeliveryError when it should be retried."""
    proposal = Proposal.objects.select_related("agent").filter(pk=proposal_id).first()
    if proposal is None or not proposal.agent.callback_url:
        return None
    if event == "decided" and proposal.status == ProposalStatus.PENDING:
        return None  # the approval it announced was undone within its window
    if not proposal.agent.callback_secret:
        # An HMAC with an empty key proves nothing; an agent must not learn to trust it.
        logger.warning("agent %s has a callback URL but no secret: not sent", proposal.agent.slug)
        return None
    problem = callback_address_problem(proposal.agent.callback_url, resolve=True)
    if problem:
        logger.warning("callback for agent %s not sent: %s", proposal.agent.slug, problem)
        return None
    body = json.dumps(
        {"event": event, "proposal": proposal_payload(proposal)}, default=str
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-SOC-Event": event,
        # The same on every retry of one event, so the agent can drop duplicates.
        "X-SOC-Delivery": f"{proposal.id}:{event}",
        "X-SOC-Timestamp": timestamp,
        "X-SOC-Signature": sign(proposal.agent.callback_secret, timestamp, body),
    }
    try:
        response = httpx.post(
            proposal.agent.callback_url,
            content=body,
            headers=headers,
            timeout=settings.CALLBACK_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(str(exc)) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise DeliveryError(f"callback answered {response.status_code}")
    return response.status_code
