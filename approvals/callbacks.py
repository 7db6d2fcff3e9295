"""HMAC-signed POSTs to an agent's callback URL on decision and on completion.

Deliveries run on their own Celery queue (settings.CALLBACK_QUEUE), consumed by their own
worker, and each has a total deadline (CALLBACK_DEADLINE_SECONDS): an agent's slow or hostile
receiver delays its own callbacks, never an execution.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from agents.callback_address import Destination, callback_destination
from agents.targets import IPAddress

from . import enqueue
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
    listens = Proposal.objects.filter(pk=proposal_id, synthetic=False)
    if listens.exclude(agent__callback_url="").exists():
        enqueue.send(enqueue.DELIVER_CALLBACK, str(proposal_id), event, countdown=countdown or None)


def deliver(*, proposal_id: str, event: str) -> int | None:
    """POST the event to the agent's callback URL; DeliveryError when it should be retried."""
    proposal = Proposal.objects.select_related("agent", "asset").filter(pk=proposal_id).first()
    if proposal is None or proposal.synthetic or not proposal.agent.callback_url:
        return None  # an attention check never reaches an agent
    if event == "decided" and proposal.status == ProposalStatus.PENDING:
        return None  # the approval it announced was undone within its window
    if not proposal.agent.callback_secret:
        # An HMAC with an empty key proves nothing; an agent must not learn to trust it.
        logger.warning("agent %s has a callback URL but no secret: not sent", proposal.agent.slug)
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
    deadline = settings.CALLBACK_DEADLINE_SECONDS
    try:
        status = _within(
            deadline, _post(proposal.agent.slug, proposal.agent.callback_url, body, headers)
        )
    except TimeoutError as exc:
        raise DeliveryError(f"no answer within the {deadline:g} s deadline") from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(str(exc) or exc.__class__.__name__) from exc
    if status is None:
        return None
    if status >= 500 or status == 429:
        raise DeliveryError(f"callback answered {status}")
    return status


T = TypeVar("T")


def _within(seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end or cancel it after `seconds`, whatever it is waiting on.

    A loop of its own rather than asyncio.run, whose clean-up waits for the resolver's threads:
    a name lookup that hangs must not outlast the deadline either.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(work, seconds))
    finally:
        loop.close()


async def _post(agent: str, url: str, body: bytes, headers: dict[str, str]) -> int | None:
    """The delivery itself: the address check (which resolves the name), then the POST to the
    addresses checked, the next when one takes no connection, up to the answer's status line.
    The answer's body is never read: only its status matters."""
    loop = asyncio.get_running_loop()
    destination = await loop.run_in_executor(None, _destination, url)
    if destination.problem:
        logger.warning("callback for agent %s not sent: %s", agent, destination.problem)
        return None
    proxy = proxy_for(url)
    timeout = httpx.Timeout(settings.CALLBACK_TIMEOUT_SECONDS)
    # The client reads no environment of its own: it goes through the proxy decided here, or
    # straight to an address checked here, never one the check did not see.
    async with httpx.AsyncClient(timeout=timeout, proxy=proxy, trust_env=False) as client:
        # By name through a proxy, or a URL that names an address: one try.
        *others, last = (() if proxy else destination.addresses) or (None,)
        for address in others:
            try:
                return await _status(client, url, address, body, headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing took the connection (an address family this worker has no route
                # for, a host that is down): the name's next address. Nothing was sent.
                logger.info(
                    "callback for agent %s: %s took no connection (%s); trying the next address",
                    agent,
                    address,
                    exc.__class__.__name__,
                )
        return await _status(client, url, last, body, headers)


async def _status(
    client: httpx.AsyncClient,
    url: str,
    address: IPAddress | None,
    body: bytes,
    headers: dict[str, str],
) -> int:
    target, headers, extensions = pinned(url, address, headers)
    async with client.stream(
        "POST", target, content=body, headers=headers, extensions=extensions
    ) as response:
        return response.status_code


def pinned(
    url: str, address: IPAddress | None, headers: dict[str, str]
) -> tuple[str | httpx.URL, dict[str, str], dict[str, str]]:
    """(URL, headers, request extensions) for a POST to the address the check resolved: the
    address in place of the name, which the Host header and TLS (SNI and the certificate's
    check) still carry. The URL as it is when no name was resolved."""
    if address is None:
        return url, headers, {}
    parsed = httpx.URL(url)
    name = parsed.raw_host.decode("ascii")
    extensions = {"sni_hostname": name} if parsed.scheme == "https" else {}
    host = {**headers, "Host": parsed.netloc.decode("ascii")}
    return parsed.copy_with(host=str(address)), host, extensions


def proxy_for(url: str) -> str | None:
    """The proxy a callback to `url` goes through: the environment's (HTTPS_PROXY, HTTP_PROXY,
    ALL_PROXY), unless NO_PROXY exempts the host, as Python's urllib reads them; or None. The
    HTTP client is handed this decision and reads nothing else. Through a proxy the callback
    goes by name (the proxy resolves it, and a tunnel would check the certificate against
    an address): keeping it out of the SOC's own network is then the proxy's rule (README,
    "Contract notes")."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _destination(url: str) -> Destination:
    return callback_destination(url, resolve=True)
