"""HMAC-signed POSTs to an agent's callback URL on decision and on completion.

Deliveries run on their own Celery queue (settings.CALLBACK_QUEUE), consumed by their own
worker, and each has a total deadline (CALLBACK_DEADLINE_SECONDS): an agent's slow or hostile
receiver delays its own callbacks, never an execution. A receiver that failed is paused (`Gate`):
its agent's other deliveries wait without holding a worker thread, and one of them at a time
tries it again when the pause is over, so that a dead receiver cannot take every thread from
the other agents' callbacks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
import urllib.request
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from agents.callback_address import Destination, callback_destination
from agents.targets import IPAddress

from . import enqueue
from .models import Proposal, ProposalStatus
from .selectors import proposal_payload

logger = logging.getLogger(__name__)


# The longest a failed delivery waits before its next try, and the longest pause a receiver
# gets however often it failed.
LONGEST_WAIT_SECONDS = 60


class DeliveryError(Exception):
    pass


class Paused(Exception):
    """The agent's receiver failed lately: this delivery waits instead of trying it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the receiver is paused for {seconds:.1f} s after a failed delivery")
        self.seconds = seconds


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
    gate = Gate(proposal.agent_id, proposal.agent.callback_url)
    gate.enter()
    deadline = settings.CALLBACK_DEADLINE_SECONDS
    try:
        status = _within(
            deadline, _post(proposal.agent.slug, proposal.agent.callback_url, body, headers)
        )
    except TimeoutError as exc:
        gate.failed()
        raise DeliveryError(f"no answer within the {deadline:g} s deadline") from exc
    except httpx.HTTPError as exc:
        gate.failed()
        raise DeliveryError(str(exc) or exc.__class__.__name__) from exc
    if status is None:
        return None  # not sent (the address check refused it): the receiver was not asked
    if status >= 500 or status == 429:
        gate.failed()
        raise DeliveryError(f"callback answered {status}")
    gate.answered()
    return status


class Gate:
    """An agent's receiver, paused after a failed delivery (in the cache, which every callbacks
    worker shares). The first pause lasts CALLBACK_PAUSE_SECONDS and each failure after it
    doubles it, up to LONGEST_WAIT_SECONDS; when it is over, one delivery (the probe) tries
    the receiver while the others wait for its answer, and any delivery that is answered ends
    the pause. Keyed by the agent and its URL, so that a new URL starts unpaused.

    Without the cache a delivery goes ahead: the pause spares the other agents' threads, and
    losing it must not lose a callback."""

    def __init__(self, agent_id: int, url: str) -> None:
        receiver = hashlib.sha256(f"{agent_id} {url}".encode()).hexdigest()[:32]
        self.pause_key = f"callback-pause:{receiver}"
        self.probe_key = f"callback-probe:{receiver}"
        self.paused: dict[str, float] | None = None

    def enter(self) -> None:
        """Return when this delivery may try the receiver; raise Paused when it must wait."""
        try:
            self.paused = cache.get(self.pause_key)
            if self.paused is None:
                return
            left = self.paused["until"] - time.time()
            if left > 0:
                raise Paused(left)
            probe_for = settings.CALLBACK_DEADLINE_SECONDS + 1
            if not cache.add(self.probe_key, 1, timeout=math.ceil(probe_for)):
                raise Paused(probe_for)  # another delivery is trying it: wait for its answer
        except RedisError:
            logger.warning("callback pause unknown (the cache does not answer): delivering")

    def failed(self) -> None:
        last = self.paused["seconds"] if self.paused else 0.0
        seconds = min(2 * last or settings.CALLBACK_PAUSE_SECONDS, LONGEST_WAIT_SECONDS)
        pause = {"until": time.time() + seconds, "seconds": seconds}
        try:
            # Kept past its end, so that the next failure knows how long this pause was.
            cache.set(self.pause_key, pause, timeout=math.ceil(seconds) + 3600)
            cache.delete(self.probe_key)
        except RedisError:
            logger.warning("callback pause not recorded (the cache does not answer)")

    def answered(self) -> None:
        if self.paused is None:
            return
        try:
            cache.delete_many([self.pause_key, self.probe_key])
        except RedisError:
            logger.warning("callback pause not lifted (the cache does not answer)")


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
