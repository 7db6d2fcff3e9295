"""HMAC-signed POSTs to an agent's callback URL on decision and on completion."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from django.conf import settings

from .models import Proposal
from .selectors import proposal_payload


class DeliveryError(Exception):
    pass


def sign(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def deliver(*, proposal_id: str, event: str) -> int | None:
    proposal = Proposal.objects.select_related("agent").filter(pk=proposal_id).first()
    if proposal is None or not proposal.agent.callback_url:
        return None
    body = json.dumps(
        {"event": event, "proposal": proposal_payload(proposal)}, default=str
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-SOC-Event": event,
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
