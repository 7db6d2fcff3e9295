"""A demotion tripped by an analyst's rollback, seen live by another analyst."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals import services
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms, as the other live tests


def test_rolling_back_an_automatic_action_shows_the_demotion_on_every_console(
    console: Callable[[User], Any], live_server_url: str, analyst: User, analyst2: User
) -> None:
    bot = factories.agent("edr-bot", grants={"block_ip": 3})
    proposal = factories.proposal(bot, action="block_ip", target="203.0.113.9", confidence=0.97)
    services.execution_run(execution_id=proposal.execution.id)  # the worker's part, here
    alice, bob = console(analyst), console(analyst2)

    bob.goto(f"{live_server_url}/proposals/{proposal.id}/")
    bob.fill("#rb-reason", "The source is our own vulnerability scanner.")
    bob.once("dialog", lambda dialog: dialog.accept())
    bob.locator("button.danger", has_text="Roll back").click()
    expect(bob.locator("#flash")).to_contain_text("Rollback requested.", timeout=LIVE)

    notice = alice.locator("#demotion-notices .demotion-notice")
    expect(notice).to_have_count(1, timeout=LIVE)
    expect(notice).to_contain_text("edr-bot lost autonomy on block_ip: level 3 → 2")
    expect(notice).to_contain_text("bob rolled back an automatic action")
    assert alice.evaluate("window.__sameDocument") is True
    notice.locator("button.dismiss").click()
    expect(notice).to_have_count(0)

    # The next confident proposal waits for an analyst, as the notice says.
    after = factories.proposal(bot, action="block_ip", target="203.0.113.10", confidence=0.99)
    assert after.status == "pending"
