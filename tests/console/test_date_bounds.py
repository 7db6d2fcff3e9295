"""Every page that filters by date reads any date it is given: a far-off date is refused naming
its field (never a 500 from a period that overflows, or a report that walks centuries), a
control character in a queue filter turns that filter off, and an "until" date alone means
through that day on the audit log as on the reports and the lists."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import log
from soc_console.dates import FIRST_DAY, LAST_DAY

pytestmark = pytest.mark.django_db

DATED_PAGES = ["/blocked/", "/advisory/", "/audit/", "/reports/", "/reports/latency.csv"]


@pytest.fixture
def browser(manager: User) -> Client:
    client = Client()
    client.force_login(manager)
    return client


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    page=st.sampled_from(DATED_PAGES),
    field=st.sampled_from(["since", "until"]),
    day=st.dates(),
    with_time=st.booleans(),
)
def test_any_date_is_read_or_refused_naming_its_field(
    browser: Client, page: str, field: str, day: date, with_time: bool
) -> None:
    # The lists take dates; the audit log and the reports take a time as well.
    lists = page in ("/blocked/", "/advisory/")
    value = day.isoformat() if lists or not with_time else f"{day.isoformat()}T00:00"
    answer = browser.get(page, {field: value})
    assert answer.status_code in (200, 400), (page, field, value)
    if FIRST_DAY <= day <= LAST_DAY:
        return
    assert answer.status_code == 400
    text = answer.content.decode()
    assert f"{day.isoformat()} is outside the dates a filter takes" in text


@pytest.mark.parametrize("field", ["agent", "target"])
def test_a_control_character_in_a_queue_filter_turns_it_off_and_says_so(
    analyst: User, field: str
) -> None:
    client = Client()
    client.force_login(analyst)
    answer = client.get("/", {field: "dc01\x00"})
    assert answer.status_code == 200
    assert f"The {field} holds a control character; that filter is off." in (
        answer.content.decode()
    )


def test_an_until_date_alone_takes_in_that_whole_day_on_the_audit_log(browser: Client) -> None:
    at = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
    with transaction.atomic():
        log.record_many([log.PendingEvent(at, "user", "sam", "agent.suspended", None, {})])
    day = {"since": "2026-11-10", "until": "2026-11-10", "actor": "sam"}
    page = browser.get("/audit/", day)
    assert page.status_code == 200
    assert "No events match" not in page.content.decode()
    export = browser.get("/audit/export.jsonl", day)
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert [json.loads(line)["actor"] for line in lines] == ["sam"]
    # The day before names no event of that day.
    before = {"since": "2026-11-09", "until": "2026-11-09", "actor": "sam"}
    assert "No events match" in browser.get("/audit/", before).content.decode()
