"""The audit page's filters read every value the same way: empty filters nothing, a value
that cannot be read is a 400 naming its field and why, with no events listed; never an empty
list that looks like an answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.test import Client

from audit import log

DAY = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def events(db: None) -> None:
    with transaction.atomic():
        log.record_many(
            log.PendingEvent(DAY, "user", actor, event_type, None, {"i": i})
            for i, (actor, event_type) in enumerate(
                [("alice", "proposal.approved"), ("bob", "proposal.rejected")]
            )
        )


@pytest.mark.parametrize(
    ("query", "field", "why"),
    [
        ({"event_type": "nope"}, "Event type", "there is no event type &#x27;nope&#x27;"),
        ({"event_type": "proposal.approved\x00"}, "Event type", "there is no event type"),
        ({"actor": "\x00"}, "Actor", "holds a control character"),
        ({"actor": "ali\nce"}, "Actor", "holds a control character"),
        ({"actor": "bob\x7f"}, "Actor", "holds a control character"),
        ({"proposal": "xyz"}, "Proposal", "is not a proposal id"),
        ({"since": "2026-02-30"}, "From", "is not a valid date"),
        ({"until": "tomorrow"}, "Until", "is not a date"),
        ({"upto": "²"}, "Up to event", "is not a whole number"),
        ({"upto": "-3"}, "Up to event", "is not a whole number"),
    ],
)
@pytest.mark.parametrize("url", ["/audit/", "/audit/export.jsonl"])
def test_each_filters_bad_value_is_a_400_naming_the_field(
    client: Client, manager, events, url: str, query: dict, field: str, why: str
) -> None:
    client.force_login(manager)
    response = client.get(url, query)
    assert response.status_code == 400
    html = response.content.decode()
    assert f"Bad filter: {field}" in html
    assert why in html
    assert 'id="event-1"' not in html and "No events match" not in html


def test_an_unknown_event_type_is_answered_with_the_known_ones(client: Client, manager, events):
    client.force_login(manager)
    html = client.get("/audit/", {"event_type": "nope"}).content.decode()
    # The types the console records, recorded yet or not, and the ones the log holds.
    for known in ("proposal.approved", "proposal.rejected", "agent.suspended"):
        assert known in html.split("the known ones are", 1)[1]
    assert 'aria-invalid="true" aria-describedby="err-event_type"' in html


def test_an_event_type_the_console_records_but_the_log_lacks_yet_lists_nothing(
    client: Client, manager, events
) -> None:
    client.force_login(manager)
    response = client.get("/audit/", {"event_type": "agent.suspended"})
    assert response.status_code == 200
    assert "No events match" in response.content.decode()


@pytest.mark.parametrize(
    "query", [{"actor": ""}, {"event_type": ""}, {"proposal": ""}, {"upto": ""}, {"since": ""}]
)
def test_an_empty_filter_filters_nothing(client: Client, manager, events, query: dict) -> None:
    client.force_login(manager)
    response = client.get("/audit/", query)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="event-1"' in html and 'id="event-2"' in html


def test_good_values_of_each_filter_still_filter(client: Client, manager, events) -> None:
    client.force_login(manager)
    by_actor = client.get("/audit/", {"actor": "bob"}).content.decode()
    assert 'id="event-2"' in by_actor and 'id="event-1"' not in by_actor
    by_type = client.get("/audit/", {"event_type": "proposal.approved"}).content.decode()
    assert 'id="event-1"' in by_type and 'id="event-2"' not in by_type
    upto = client.get("/audit/", {"upto": "1"}).content.decode()
    assert 'id="event-1"' in upto and 'id="event-2"' not in upto
    # A name with spaces and letters beyond ASCII is a name, not a control character.
    assert client.get("/audit/", {"actor": "José Ñ"}).status_code == 200
