"""A filtered queue says what it shows and how it updates, and is re-read from the server: the
live updates carry the whole queue's first page only. The unfiltered queue is unchanged."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db


def _ids(page: str) -> list[str]:
    return re.findall(r'<article id="card-([0-9a-f-]+)"', page)


@pytest.fixture
def three_pending(agent_with_key: factories.AgentWithKey, settings: Any) -> list[str]:
    """Three pending proposals, and a page of two."""
    settings.QUEUE_PAGE_SIZE = 2
    return [
        str(factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example").pk)
        for n in range(3)
    ]


def test_a_filtered_queue_says_it_is_re_read_and_not_the_whole_queues_first_page(
    signed_in: Callable[[User], Client], analyst: User, three_pending: list[str]
) -> None:
    page = signed_in(analyst).get("/?target=ws-0001").content.decode()
    assert _ids(page) == [three_pending[1]]
    section = re.search(r'<section id="queue"[^>]*>', page)
    assert section is not None and 'data-refresh="10"' in section.group(0)
    assert (
        "Filtered: the pending proposals that match, highest priority first. This list is "
        "re-read from the server every 10 s: a matching proposal among the whole queue's 2 "
        "highest-priority ones appears at once, any other at the next re-read."
    ) in page
    # Three are pending and the page holds two, but this page shows one card: the first page
    # of the whole queue is not what it shows.
    assert "Showing the 2 highest-priority proposals" not in page
    assert 'id="queue-more"' not in page
    assert "No proposals waiting." not in page


def test_a_filtered_queue_with_more_matches_than_it_shows_says_so(
    signed_in: Callable[[User], Client], analyst: User, three_pending: list[str]
) -> None:
    page = signed_in(analyst).get("/?target=corp.example").content.decode()
    assert len(_ids(page)) == 2
    assert "; the first 2 are shown, and more match." in page


def test_an_empty_filtered_queue_says_when_a_match_would_appear(
    signed_in: Callable[[User], Client], analyst: User, three_pending: list[str], settings: Any
) -> None:
    settings.QUEUE_FILTER_REFRESH_SECONDS = 2.5
    page = signed_in(analyst).get("/?target=nothing-like-it").content.decode()
    assert _ids(page) == []
    assert (
        "No pending proposal matches this filter. A matching one appears here within 2.5 s of "
        "arriving."
    ) in page
    assert 'data-refresh="2.5"' in page
    assert "No proposals waiting." not in page
    assert "; the first 2 are shown" not in page


def test_the_filtered_list_region_the_page_re_reads_is_the_servers_rendering(
    signed_in: Callable[[User], Client], analyst: User, three_pending: list[str]
) -> None:
    """What console.js fetches every data-refresh seconds: the #queue region alone, for the
    same filter, with its period again."""
    response = signed_in(analyst).get("/?target=ws-0002", HTTP_HX_REQUEST="true")
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<section id="queue"')
    assert "<html" not in fragment
    assert 'data-refresh="10"' in fragment
    assert _ids(fragment) == [three_pending[2]]


def test_the_unfiltered_queue_keeps_its_live_page_and_is_not_re_read(
    signed_in: Callable[[User], Client], analyst: User, three_pending: list[str]
) -> None:
    page = signed_in(analyst).get("/").content.decode()
    assert len(_ids(page)) == 2
    assert "data-refresh" not in page
    assert 'id="queue-filtered"' not in page
    assert "Showing the 2 highest-priority proposals" in page
    assert "No proposals waiting. New ones appear here as agents send them." in page  # hidden
