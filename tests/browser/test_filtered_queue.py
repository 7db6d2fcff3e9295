"""A filtered queue receives the matching cards that are not on the whole queue's first page,
which the live updates do not carry: the page re-reads its list from the server."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from agents.models import Criticality
from approvals import selectors
from tests import factories
from tests.browser.conftest import _serve
from tests.browser.proposing import propose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGE = 3  # the queue's page on this test's server
REFRESH = 2  # s: how often that server has a filtered page re-read its list


@pytest.fixture(scope="module")
def small_page_url(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    with _serve(
        django_db_blocker,
        "live-server-small-page",
        QUEUE_PAGE_SIZE=str(PAGE),
        QUEUE_FILTER_REFRESH_SECONDS=str(REFRESH),
    ) as url:
        yield url


_propose = partial(propose, expect="pending")
re_selected = re.compile(r"\bselected\b")


def test_a_matching_card_below_the_whole_queues_page_reaches_a_filtered_view(
    console: Callable[..., Any],
    small_page_url: str,
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    for n in range(PAGE):
        factories.asset(f"srv-{n}.corp.example", criticality=Criticality.HIGH)
        _propose(small_page_url, agent_with_key, f"srv-{n}.corp.example", confidence=0.9)
    factories.asset("beyond-ws01.corp.example", criticality=Criticality.LOW)

    page = console(analyst, small_page_url)
    page.goto(f"{small_page_url}/?target=beyond-")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#queue-empty")).to_have_text(
        f"No pending proposal matches this filter. A matching one appears here within {REFRESH} "
        "s of arriving."
    )
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(page.locator("#queue-filtered")).to_contain_text(
        f"This list is re-read from the server every {REFRESH} s"
    )
    expect(page.locator("#queue-more")).to_have_count(0)

    beyond = _propose(small_page_url, agent_with_key, "beyond-ws01.corp.example", confidence=0.55)
    # Below the whole queue's first page: no live update carries it.
    assert beyond not in [str(card.id) for card in selectors.pending_queue(limit=PAGE)]

    card = page.locator(f"#card-{beyond}")
    expect(card).to_be_visible(timeout=(REFRESH + 3) * 1000)
    expect(card).to_contain_text("beyond-ws01.corp.example")
    expect(page.locator("#queue-empty")).to_be_hidden()
    # Still the global page's text nowhere, though more are pending than that page holds.
    expect(page.locator("#queue-more")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True  # no reload


def test_a_card_the_analysts_own_filter_hides_is_not_reported_as_decided(
    console: Callable[..., Any],
    analyst: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    # Reported: typing a target filter that the selected card does not match showed "no longer
    # in this list: it was decided, withdrawn or expired while the connection was down".
    kept = factories.proposal(agent_with_key, target="ws-0401.corp.example")
    factories.proposal(agent_with_key, target="ws-0402.corp.example")
    page = console(analyst)
    page.locator(f"#card-{kept.id} .effect").click()
    expect(page.locator(f"#card-{kept.id}")).to_have_class(re_selected)

    page.locator("#queue-filter input[name=target]").fill("ws-0402")

    notice = page.locator("#queue-cards > .card-left")
    expect(notice).to_contain_text("does not match your filter", timeout=5000)
    expect(page.locator("#flash")).not_to_contain_text("connection was down")
    kept.refresh_from_db()
    assert kept.status == "pending"
