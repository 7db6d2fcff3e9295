"""A decision that does not go through says so in the page, and keeps the card and the note the
analyst typed: with the server down, and after the session changed in another tab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.models import Proposal
from tests import factories, processes
from tests.browser.conftest import _collected_static, sign_in
from tests.browser.proposing import propose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 2000  # ms
NOTE = "Checked with the desk: go ahead"


def _sign_in(page: Any, url: str, user: User) -> None:
    sign_in(page, url, user.username, live=False)


@pytest.fixture
def stoppable_server(transactional_db: None, tmp_path: Path) -> Iterator[Any]:
    """A web server of this test's own, which the test stops: (process, url)."""
    environment = processes.shared_environment()
    process, url = processes.start_web(
        environment,
        log_dir=tmp_path,
        workers=1,
        STATIC_ROOT=str(_collected_static()),
        LOG_LEVEL="WARNING",
    )
    try:
        yield process, url
    finally:
        process.stop()


def test_a_decision_with_the_server_down_says_nothing_was_changed_and_keeps_the_note(
    browser: Any,
    stoppable_server: Any,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    server, url = stoppable_server
    proposal_id = propose(url, agent_with_key, "ws-0142.corp.example")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(5000)
        _sign_in(page, url, analyst)
        expect(page.locator("#live-status")).to_have_text("live")
        card = page.locator(f"#card-{proposal_id}")
        expect(card).to_be_visible()

        server.stop()
        expect(page.locator("#live-status")).to_have_text("reconnecting…", timeout=10_000)
        card.locator("input.reason").fill(NOTE)
        card.locator("button.approve").click()

        expect(page.locator("#flash")).to_have_text(
            "Not decided: the console cannot reach the server; nothing was changed. "
            "Try again when it is back."
        )
        expect(page.locator("#flash .flash")).to_have_class("flash error")
        expect(card).to_be_visible()
        expect(card.locator("input.reason")).to_have_value(NOTE)
        assert Proposal.objects.get(pk=proposal_id).status == "pending"
    finally:
        context.close()


def test_a_decision_after_signing_out_and_in_elsewhere_asks_for_a_reload_and_keeps_the_note(
    console: Callable[[User], Any],
    live_server_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    first = console(analyst)
    proposal_id = propose(live_server_url, agent_with_key, "ws-0217.corp.example")
    card = first.locator(f"#card-{proposal_id}")
    expect(card).to_be_visible(timeout=LIVE)

    second = first.context.new_page()
    second.set_default_timeout(5000)
    second.goto(f"{live_server_url}/")
    second.get_by_role("button", name="Sign out").click()
    second.wait_for_url(f"{live_server_url}/accounts/login/")
    _sign_in(second, live_server_url, analyst)  # a new session, and a new CSRF token

    card.locator("input.reason").fill(NOTE)
    card.locator("button.approve").click()
    expect(first.locator("#flash")).to_have_text(
        "Not decided: your session changed (signed out or signed in elsewhere). "
        "Reload the page and decide again."
    )
    expect(card).to_be_visible()
    expect(card.locator("input.reason")).to_have_value(NOTE)
    assert Proposal.objects.get(pk=proposal_id).status == "pending"

    # As the message says: after a reload the same decision goes through.
    first.reload()
    first.locator(f"#card-{proposal_id} input.reason").fill(NOTE)
    first.locator(f"#card-{proposal_id} button.approve").click()
    expect(first.locator("#flash")).to_contain_text("Approved: Isolate host ws-0217.corp.example.")
    assert Proposal.objects.get(pk=proposal_id).status == "approved"
