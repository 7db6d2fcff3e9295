"""Single sign-on, end to end: Chromium signs in to the console through a real OpenID Connect
provider (django-oauth-toolkit, tests/oidc_provider) with password sign-in switched off, and
the console's roles follow the provider's groups from one sign-in to the next."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from playwright.sync_api import expect

from agents.client import AgentClient
from approvals.models import Proposal
from audit.models import AuditEvent
from tests import factories
from tests.browser.conftest import PASSWORD, _keep_screenshots
from tests.oidc_provider.harness import Provider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms
PROVIDER_PASSWORD = "alice-at-the-provider"

# A decision through the API from the page itself: the browser's session cookie and the CSRF
# token the page carries, as a script of the console's own would send it.
DECIDE = """async ([id, body]) => {
  const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
  const answer = await fetch(`/api/v1/proposals/${id}/decisions/`, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
    body: JSON.stringify(body),
  });
  return [answer.status, await answer.json()];
}"""


def _roles(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def _sign_in(page: Any, url: str, provider: Provider, *, at_provider: bool) -> Any:
    """From the console's sign-in page through the provider; returns the callback's answer.
    `at_provider`: the provider asks for a password (no session there yet)."""
    page.goto(f"{url}/accounts/login/")
    expect(page.locator("#id_password")).to_have_count(0)  # password sign-in is off
    with page.expect_response(lambda r: "/oidc/callback/" in r.url) as callback:
        page.get_by_role("link", name="Sign in with Test IdP").click()
        if at_provider:
            page.wait_for_url(f"{provider.url}/accounts/login/**")
            page.fill("#provider-username", "alice")
            page.fill("#provider-password", PROVIDER_PASSWORD)
            page.click("#provider-submit")
    return callback.value


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Any) -> Iterator[Any]:
    """A fresh browser context's page; kept as a screenshot when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(5000)
    yield opened
    _keep_screenshots(request, [opened])
    context.close()


def test_analyst_signs_in_through_the_provider_and_roles_follow_its_groups(
    page: Any, sso: tuple[Provider, str], agent_with_key: factories.AgentWithKey
) -> None:
    provider, url = sso
    provider.set_users({"alice": (PROVIDER_PASSWORD, ["soc-analysts", "staff"])})
    # First sign-in: a password at the provider, back to the queue with its socket live.
    _sign_in(page, url, provider, at_provider=True)
    page.wait_for_url(f"{url}/")
    page.wait_for_selector("#live-status.ok")
    expect(page.locator(".who")).to_contain_text("alice · analyst")
    # The session lasts a shift (OIDC_SESSION_HOURS), not Django's two weeks.
    [session] = [c for c in page.context.cookies() if c["name"] == "sessionid"]
    assert 11.9 * 3600 < session["expires"] - time.time() <= 12 * 3600
    alice = User.objects.get(username="alice")
    assert _roles("alice") == {"analyst"}
    assert not alice.has_usable_password()
    [synced] = AuditEvent.objects.filter(event_type="role.synced")
    assert synced.data["granted"] == ["analyst"] and synced.data["revoked"] == []

    # The websocket takes the session: a proposal posted now arrives without a reload.
    page.evaluate("window.__sameDocument = true")
    with AgentClient(url, agent_with_key.raw_key) as client:
        posted = client.propose(
            action="isolate_host",
            target="ws-0142.corp.example",
            confidence=0.74,
            rationale="Beaconing to a domain registered yesterday.",
            evidence=[{"kind": "alert", "ref": "SIEM-4821"}],
            severity="high",
        )
    assert posted.status == 201, posted.body
    proposal_id = str(posted.body["id"])
    card = page.locator(f"#card-{proposal_id}")
    expect(card).to_be_visible(timeout=LIVE)

    # The decision API takes it too, with its CSRF token; without the token it refuses.
    status, body = page.evaluate(
        DECIDE.replace('"X-CSRFToken": token', '"X-Other": token'),
        [proposal_id, {"verdict": "reject", "reason": "Known scanner"}],
    )
    assert status == 403, body
    status, body = page.evaluate(
        DECIDE, [proposal_id, {"verdict": "reject", "reason": "Known scanner"}]
    )
    assert status == 201, body
    expect(card).to_have_count(0, timeout=LIVE)
    assert page.evaluate("window.__sameDocument") is True
    decision = Proposal.objects.get(pk=proposal_id).decisions.get()
    assert decision.analyst == alice and decision.verdict == "reject"

    # The provider makes her a lead: at her next sign-in she is a senior analyst and no
    # longer an analyst. The provider's session is still open, so no password this time.
    provider.set_users({"alice": (PROVIDER_PASSWORD, ["soc-leads"])})
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{url}/accounts/login/")
    _sign_in(page, url, provider, at_provider=False)
    page.wait_for_url(f"{url}/")
    expect(page.locator(".who")).to_contain_text("alice · senior analyst")
    assert _roles("alice") == {"senior_analyst"}
    synced = AuditEvent.objects.filter(event_type="role.synced").order_by("-seq").first()
    assert synced.data["granted"] == ["senior_analyst"]
    assert synced.data["revoked"] == ["analyst"]

    # Out of every group that gives a role: refused, with a page that says why, and her
    # roles are gone (any session she still has elsewhere can do nothing).
    provider.set_users({"alice": (PROVIDER_PASSWORD, ["staff"])})
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{url}/accounts/login/")
    started = time.monotonic()
    callback = _sign_in(page, url, provider, at_provider=False)
    assert callback.status == 403
    expect(page.locator("h1")).to_have_text("Sign-in refused")
    expect(page.locator("[role=alert]")).to_contain_text(
        "Test IdP signed you in as alice, but none of your groups there gives a role"
    )
    assert time.monotonic() - started < 5
    assert _roles("alice") == set()
    [refused] = AuditEvent.objects.filter(event_type="signin.refused")
    assert refused.data["reason"] == "no_role"
    assert refused.data["revoked"] == ["senior_analyst"]
    assert refused.data["provider_groups"] == ["staff"]
    page.goto(f"{url}/")
    page.wait_for_url(f"{url}/accounts/login/?next=/")


def test_password_sign_in_is_refused_when_local_login_is_off(
    sso: tuple[Provider, str], live_server_url: str, analyst: User
) -> None:
    _, url = sso
    # A session signed in with a password, before passwords were switched off: the console
    # that still takes passwords lets it in, the one with LOCAL_LOGIN off does not.
    signed_in = Client()
    signed_in.force_login(analyst, backend="django.contrib.auth.backends.ModelBackend")
    cookies = {"sessionid": signed_in.cookies["sessionid"].value}
    assert httpx.get(f"{live_server_url}/", cookies=cookies).status_code == 200
    ended = httpx.get(f"{url}/", cookies=cookies)
    assert ended.status_code == 302 and ended.headers["location"] == "/accounts/login/?next=/"

    with httpx.Client(base_url=url) as client:
        page = client.get("/accounts/login/")
        assert "Sign in with Test IdP" in page.text
        assert 'name="password"' not in page.text
        refused = client.post(
            "/accounts/login/",
            data={
                "username": analyst.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        assert refused.status_code == 403
        assert "Password sign-in is turned off: sign in with Test IdP." in refused.text
        assert "sessionid" not in client.cookies
        # The admin's password form leads to the same page.
        admin = client.get("/admin/login/?next=/admin/")
        assert admin.status_code == 302
        assert admin.headers["location"] == "/accounts/login/?next=/admin/"
