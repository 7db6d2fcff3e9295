"""Signing out in one tab ends the live queue in every tab of that browser: the page says it is
signed out, and nothing posted afterwards reaches it."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests import factories
from tests.browser.proposing import propose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms


_propose = partial(propose, rationale="Posted after the analyst signed out.")


def test_signing_out_in_another_tab_ends_the_live_queue(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    first = console(analyst)
    first.goto(f"{live_server_url}/?target=signedout-")
    expect(first.locator("#live-status")).to_have_text("live")
    first.evaluate("window.__sameDocument = true")

    second = first.context.new_page()
    second.set_default_timeout(5000)
    second.goto(f"{live_server_url}/")
    second.get_by_role("button", name="Sign out").click()
    second.wait_for_url(f"{live_server_url}/accounts/login/")

    status = first.locator("#live-status")
    expect(status).to_have_text("signed out · sign in", timeout=LIVE)
    expect(status.get_by_role("link", name="sign in")).to_have_attribute(
        "href", "/accounts/login/?next=%2F%3Ftarget%3Dsignedout-"
    )

    proposal_id = _propose(live_server_url, agent_with_key, "signedout-ws01.corp.example")
    time.sleep(LIVE / 1000)  # what a live card takes, and more
    expect(first.locator(f"#card-{proposal_id}")).to_have_count(0)
    expect(first.locator("#queue")).not_to_contain_text("Posted after the analyst signed out.")
    expect(status).to_contain_text("signed out")
    assert first.evaluate("window.__sameDocument") is True  # the page was not reloaded
