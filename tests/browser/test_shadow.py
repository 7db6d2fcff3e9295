"""A manager promotes a shadow policy in the browser; the next proposal is routed by it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import expect

from agents.client import AgentClient
from agents.models import PolicyState
from agents.services import policy_shadow_start
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_promoting_a_shadow_routes_the_next_proposal_by_it(
    console: Callable[..., Any], live_server_url: str
) -> None:
    manager = factories.user("maya", factories.MANAGER)
    # Room for the sample under the circuit breaker.
    bot = factories.agent(
        "shadowed-bot",
        grants={"block_ip": 2, "kill_process": 2},
        max_pending=200,
        max_proposals_per_minute=200,
    )
    shadow = policy_shadow_start(
        agent=bot.agent, grants={"block_ip": 3, "kill_process": 0}, by="maya"
    )
    # The sample: proposals the shadow would have blocked are scored as they arrive.
    for n in range(settings.SHADOW_MIN_SAMPLE):
        factories.proposal(
            bot, action="kill_process", target=f"ws-{n:04d}.corp.example", confidence=0.9
        )

    page = console(manager)
    page.goto(f"{live_server_url}/agents/shadowed-bot/shadow/")
    expect(page.locator("#would-block")).to_contain_text(
        f"{settings.SHADOW_MIN_SAMPLE} of {settings.SHADOW_MIN_SAMPLE}"
    )
    page.click("#promote")
    expect(page.locator("#flash")).to_contain_text(f"Version {shadow.version} promoted")
    live = bot.agent.policies.live().first()
    assert live.version == shadow.version + 1
    assert bot.agent.policies.get(pk=shadow.pk).state == PolicyState.PROMOTED

    with AgentClient(live_server_url, bot.raw_key) as client:
        result = client.propose(
            action="block_ip",
            target="203.0.113.200",
            confidence=0.95,
            rationale="Brute force from a listed source.",
            evidence=[{"kind": "alert", "ref": "SIEM-9"}],
            severity="high",
        )
    assert result.status == 201, result.body
    assert result.body["status"] == "auto_approved"
    assert result.body["routing"]["policy_version"] == live.version
    assert result.body["routing"]["shadow_version"] is None

    page.goto(f"{live_server_url}/proposals/{result.body['id']}/")
    expect(page.locator("body")).to_contain_text(f"version {live.version}: level 3 conditions met")
