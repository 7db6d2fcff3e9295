"""Production hardening against the live server (uvicorn, two processes, the Redis channel
layer): the Content-Security-Policy on every page in Chromium, the websocket's origin check
by host and port, the "being reviewed" relay under a flood, and sign-in throttling over ASGI."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from approvals import services
from approvals.consumers import REVIEW_BURST, REVIEW_PER_SECOND
from tests import factories
from tests.browser.conftest import SIGN_IN_MS
from tests.browser.proposing import propose

# PostgreSQL only (the SQLite run leaves these out): committed rows read by other sessions.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PASSWORD = "pass-for-tests"
T = TypeVar("T")


_propose = partial(propose, confidence=0.74)


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _run(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run an asyncio scenario on a thread of its own: the browser fixture's Playwright keeps
    an event loop on the main thread while it is up."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def _ws_url(live_server_url: str) -> str:
    return live_server_url.replace("http://", "ws://") + "/ws/queue/"


# --- Content-Security-Policy ------------------------------------------------------------------

# Recorded before any page script runs, whatever the page: Playwright's init scripts are not
# subject to the page's policy.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} ` +
    `at ${e.sourceFile || location.href}:${e.lineNumber} (${e.sample || ""})`);
});
"""


@pytest.mark.browser
def test_every_page_passes_the_content_security_policy_in_chromium(
    browser: Any,
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    admin = User.objects.create_superuser("root", "root@soc.example", PASSWORD)
    factories.asset("dc01.corp.example", criticality="critical")
    pending = _propose(live_server_url, agent_with_key, "ws-0142.corp.example")
    done = _propose(live_server_url, agent_with_key, "ws-0143.corp.example")
    services.proposal_approve(proposal_id=done, analyst=analyst, reason="")
    factories.proposal(agent_with_key, target="dc01.corp.example")
    policy = agent_with_key.agent.current_policy

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(10000)
    complaints: list[str] = []
    page.on(
        "console",
        lambda message: (
            complaints.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: complaints.append(f"{page.url}: {error}"))
    violations: list[str] = []

    def visit(path: str, ready: str = "body") -> None:
        response = page.goto(live_server_url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        assert "script-src 'self'" in response.headers.get("content-security-policy", ""), path
        page.wait_for_selector(ready)
        page.wait_for_timeout(300)  # late scripts, styles and sockets
        violations.extend(f"{path}: {v}" for v in page.evaluate("window.__violations"))

    visit("/accounts/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]", timeout=SIGN_IN_MS)
    page.wait_for_url(live_server_url + "/", timeout=SIGN_IN_MS)
    # htmx, its ws extension and the socket ran
    page.wait_for_selector("#live-status.ok", timeout=SIGN_IN_MS)
    violations.extend(f"/: {v}" for v in page.evaluate("window.__violations"))

    # htmx at work under the policy: a live card arrives, a decision swaps in its answer.
    arrived = _propose(live_server_url, agent_with_key, "ws-0150.corp.example")
    page.wait_for_selector(f"#card-{arrived}")
    page.wait_for_timeout(400)  # it arrived above another card: still a moment before a click
    page.locator(f"#card-{arrived} button.approve").click()
    page.wait_for_selector(f"#card-{arrived}", state="detached")
    violations.extend(f"/ (after htmx): {v}" for v in page.evaluate("window.__violations"))

    for path, ready in [
        (f"/proposals/{pending}/", "main"),
        (f"/proposals/{done}/", "main"),
        ("/lists/", "main"),
        ("/agents/", "main"),
        ("/reports/?report=latency", "svg"),
        ("/reports/?report=fatigue", "svg"),
        ("/reports/?report=trust", "svg"),
        ("/reports/?report=whatif", "svg"),
        ("/audit/", "main"),
        ("/admin/", "#content"),
        ("/admin/auth/user/", "#result_list"),
        (f"/admin/auth/user/{admin.pk}/change/", "#user_form"),
        (f"/admin/agents/policy/{policy.pk}/change/", "#content"),
        ("/admin/audit/auditevent/", "#content"),
        ("/api/v1/docs/", ".swagger-ui .info"),
    ]:
        visit(path, ready)
    context.close()
    assert violations == []
    assert complaints == []


# --- the websocket's origin -------------------------------------------------------------------


async def _handshake(url: str, origin: str, cookie: str) -> int:
    """The HTTP status of the websocket handshake: 101 when the server accepts it."""
    try:
        async with websockets.connect(
            url, origin=origin, additional_headers={"Cookie": cookie}, open_timeout=5
        ):
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


def test_a_websocket_from_another_port_of_the_same_host_is_refused(
    live_server_url: str, analyst: User
) -> None:
    cookie = _session_cookie(analyst)
    url = _ws_url(live_server_url)
    port = urlsplit(live_server_url).port
    assert _run(lambda: _handshake(url, live_server_url, cookie)) == 101
    for origin in (
        f"http://127.0.0.1:{port + 1}",  # another service on this host
        "http://127.0.0.1",  # the same host on port 80
        f"https://127.0.0.1:{port}",  # another scheme
        f"http://localhost:{port}",  # another name
        "null",  # a sandboxed frame or a file
    ):
        assert _run(lambda origin=origin: _handshake(url, origin, cookie)) == 403, origin


# --- the "being reviewed by" relay under a flood -----------------------------------------------

FLOOD = 30_000


def test_a_flood_of_review_frames_reaches_other_consoles_at_a_bounded_rate(
    live_server_url: str,
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    url = _ws_url(live_server_url)
    cards = [str(uuid.uuid4()) for _ in range(100)]
    last_card = f'id="reviewing-{cards[(FLOOD - 1) % 100]}"'

    flooder_cookie, watcher_cookie = _session_cookie(analyst), _session_cookie(analyst2)

    async def scenario() -> tuple[int, float, float]:
        loop = asyncio.get_running_loop()
        async with (
            websockets.connect(
                url, origin=live_server_url, additional_headers={"Cookie": flooder_cookie}
            ) as flooder,
            websockets.connect(
                url, origin=live_server_url, additional_headers={"Cookie": watcher_cookie}
            ) as watcher,
        ):
            started = loop.time()
            for n in range(FLOOD):
                await flooder.send(json.dumps({"reviewing": cards[n % 100]}))
            # While the server works through the flood, an agent's new proposal must still
            # reach the watcher at once (it is broadcast before the 201 is sent).
            proposal = await asyncio.to_thread(
                _propose, live_server_url, agent_with_key, "ws-0777.corp.example"
            )
            proposed_at = loop.time()
            card_after: float | None = None
            reviews: list[str] = []
            while card_after is None or not reviews or last_card not in reviews[-1]:
                message = str(await asyncio.wait_for(watcher.recv(), timeout=30))
                if f'id="card-{proposal}"' in message:
                    card_after = max(0.0, loop.time() - proposed_at)
                if 'id="reviewing-' in message:
                    reviews.extend(re.findall(r'<span id="reviewing-[^>]*>', message))
            return len(reviews), loop.time() - started, card_after

    count, elapsed, card_after = _run(scenario)
    print(f"\n{count} review frames reached the watcher in {elapsed:.2f} s")
    print(f"an agent's new card reached it {card_after * 1000:.0f} ms after the 201")
    assert count <= REVIEW_BURST + REVIEW_PER_SECOND * elapsed + 1
    assert card_after < 1.0


# --- sign-in throttling through the ASGI server -------------------------------------------------


def _attempt(live_server_url: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=live_server_url, timeout=10) as client:
        form = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None
        return client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token[1]},
        )


def test_sign_in_is_throttled_through_the_asgi_server(live_server_url: str) -> None:
    User.objects.create_user("alice", password=PASSWORD)
    answers = [_attempt(live_server_url, "alice", f"guess-{n}").status_code for n in range(12)]
    assert answers == [200] * 9 + [429] * 3
    refused = _attempt(live_server_url, "alice", PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed sign-ins for this username or from this address" in refused.text
    assert "refused for 15 minutes" in refused.text
    # This address is locked for everyone now (all test traffic comes from 127.0.0.1).
    User.objects.create_user("bob", password=PASSWORD)
    assert _attempt(live_server_url, "bob", PASSWORD).status_code == 429
