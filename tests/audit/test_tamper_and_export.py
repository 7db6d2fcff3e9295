from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client

from audit import log, verify
from audit.models import AuditEvent, VerificationRun
from tests import factories

DAY = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def _events(count: int = 6) -> None:
    """Events one day apart, alternating between two actors."""
    with transaction.atomic():
        log.record_many(
            log.PendingEvent(
                at=DAY + timedelta(days=i),
                actor_type="user",
                actor="alice" if i % 2 == 0 else "bob",
                event_type="proposal.approved" if i % 2 == 0 else "proposal.rejected",
                proposal_id=None,
                # Characters that COPY and JSON both escape must survive the round trip.
                data={"i": i, "note": "ünïcode ✓", "score": 0.82, "raw": 'a\tb\nc "q" \\ d'},
            )
            for i in range(count)
        )


def _tamper(*statements: tuple[str, list]) -> None:
    # What a database superuser can do: switch the append-only triggers off and edit rows.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def _verify_and_read_page(client: Client, manager) -> tuple[str, str]:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    client.force_login(manager)
    page = client.get("/audit/").content.decode()
    return str(failure.value), page


@pytest.mark.django_db
def test_bulk_appended_events_verify_like_recorded_ones(agent_with_key) -> None:
    before = AuditEvent.objects.count()  # registering the agent recorded its own events
    _events()
    with transaction.atomic():
        log.record(event_type="after.bulk", actor="carol", data={"x": [1, 2]})
    result = verify.verify_chain()
    assert result.ok, result.problem
    assert result.events == before + 7
    last = AuditEvent.objects.get(seq=before + 7)
    assert last.event_type == "after.bulk"
    assert last.prev_hash == AuditEvent.objects.get(seq=before + 6).hash
    assert result.head_hash == last.hash


@pytest.mark.postgres
@pytest.mark.django_db
def test_modified_event_is_named_by_command_and_page(client: Client, manager) -> None:
    _events()
    _tamper(("UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = 4", []))
    message, page = _verify_and_read_page(client, manager)
    assert "BROKEN at event #4" in message and "modified" in message
    assert "BROKEN at event #4: event #4 (proposal.rejected) was modified" in page
    assert 'href="?upto=4#event-4"' in page
    jump = client.get("/audit/", {"upto": 4}).content.decode()
    assert 'id="event-4" class="bad-event"' in jump and 'id="event-5"' not in jump


@pytest.mark.postgres
@pytest.mark.django_db
def test_removed_event_is_named_by_command_and_page(client: Client, manager) -> None:
    _events()
    _tamper(("DELETE FROM audit_auditevent WHERE seq = 3", []))
    message, page = _verify_and_read_page(client, manager)
    assert "BROKEN at event #3" in message and "missing" in message
    assert "BROKEN at event #3: event #3 is missing" in page


@pytest.mark.postgres
@pytest.mark.django_db
def test_reordered_events_are_named_by_command_and_page(client: Client, manager) -> None:
    _events()
    _tamper(
        ("UPDATE audit_auditevent SET seq = -1 WHERE seq = 2", []),
        ("UPDATE audit_auditevent SET seq = 2 WHERE seq = 5", []),
        ("UPDATE audit_auditevent SET seq = 5 WHERE seq = -1", []),
    )
    message, page = _verify_and_read_page(client, manager)
    assert "BROKEN at event #2" in message and "reordered" in message
    assert "BROKEN at event #2: event #2 does not follow #1" in page
    run = VerificationRun.objects.get()
    # #2 and #5 were swapped: each, and each one's successor, no longer links up.
    assert (run.ok, run.first_bad_seq, run.events, run.bad_events) == (False, 2, 6, 4)
    assert [p["seq"] for p in run.problems] == [2, 3, 5, 6]


@pytest.mark.postgres
@pytest.mark.django_db
def test_without_a_file_anchor_events_removed_from_the_end_go_unseen_and_it_says_so() -> None:
    _events()
    _tamper(("DELETE FROM audit_auditevent WHERE seq = 6", []))
    result = verify.verify_chain()
    assert result.ok and result.events == 5
    assert any("no file anchor" in note for note in result.notes)


@pytest.mark.django_db
def test_intact_chain_shows_as_intact_on_the_page(client: Client, manager) -> None:
    _events()
    call_command("verify_audit")
    client.force_login(manager)
    page = client.get("/audit/").content.decode()
    assert "intact (6 events)" in page
    assert AuditEvent.objects.get(seq=6).hash in page  # the chain head


# --- audit page filters ----------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_page_filters_by_actor_type_and_time(client: Client, manager) -> None:
    _events()
    client.force_login(manager)
    by_actor = client.get("/audit/", {"actor": "bob"}).content.decode()
    assert 'id="event-2"' in by_actor and 'id="event-1"' not in by_actor
    by_type = client.get("/audit/", {"event_type": "proposal.approved"}).content.decode()
    assert 'id="event-1"' in by_type and 'id="event-2"' not in by_type
    # An "until" date takes in that whole day.
    by_time = client.get("/audit/", {"since": "2026-11-12", "until": "2026-11-13"})
    html = by_time.content.decode()
    assert [s for s in range(1, 7) if f'id="event-{s}"' in html] == [3, 4]


@pytest.mark.django_db
def test_audit_page_is_paginated(client: Client, manager) -> None:
    with transaction.atomic():
        log.record_many(
            log.PendingEvent(DAY, "system", "system", "test.event", None, {"i": i})
            for i in range(130)
        )
    client.force_login(manager)
    first = client.get("/audit/").content.decode()
    second = client.get("/audit/", {"page": 2}).content.decode()
    assert 'id="event-130"' in first and 'id="event-30"' not in first
    assert 'id="event-30"' in second and "Page 2 of 2" in second


# --- JSON lines export -----------------------------------------------------------------------


@pytest.mark.django_db
def test_export_audit_command_writes_the_period_as_json_lines(tmp_path) -> None:
    _events()
    target = tmp_path / "audit.jsonl"
    call_command("export_audit", since="2026-11-11", until="2026-11-12", output=str(target))
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [line["seq"] for line in lines] == [2, 3]
    assert lines[0]["actor"] == "bob" and lines[0]["data"]["note"] == "ünïcode ✓"
    stored = AuditEvent.objects.get(seq=3)
    assert lines[1]["hash"] == stored.hash and lines[1]["prev_hash"] == stored.prev_hash


@pytest.mark.django_db
def test_export_audit_command_prints_to_stdout(capsys) -> None:
    _events()
    call_command("export_audit", since="2026-11-15T00:00:00+00:00")
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in out] == [6]


@pytest.mark.django_db
def test_export_audit_refuses_a_bad_date() -> None:
    with pytest.raises(CommandError, match="--since: .last tuesday. is not a date"):
        call_command("export_audit", since="last tuesday")


@pytest.mark.django_db
def test_export_page_filters_by_time(client: Client, manager) -> None:
    _events()
    client.force_login(manager)
    response = client.get("/audit/export.jsonl", {"since": "2026-11-14"})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [5, 6]


SWAP_20_21 = [
    "UPDATE audit_auditevent SET seq = -1 WHERE seq = 20",
    "UPDATE audit_auditevent SET seq = 20 WHERE seq = 21",
    "UPDATE audit_auditevent SET seq = 21 WHERE seq = -1",
]


# The worker processes read over their own connections: the events must be committed.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("statements", "bad_seq", "words", "bad_count"),
    [
        (["UPDATE audit_auditevent SET data = '{\"i\": 99}' WHERE seq = 37"], 37, "modified", 1),
        (["DELETE FROM audit_auditevent WHERE seq = 41"], 41, "missing", 1),
        (SWAP_20_21, 20, "reordered", 3),  # #20, #21, and #22 whose predecessor changed
    ],
)
def test_parallel_verification_names_the_same_event(
    monkeypatch, statements, bad_seq, words, bad_count
) -> None:
    # Large chains are checked in ranges by worker processes; shrink the ranges so that this
    # small chain spans many of them, seams included.
    monkeypatch.setattr(verify, "PARALLEL_FROM", 0)
    monkeypatch.setattr(verify, "RANGE_EVENTS", 7)
    with transaction.atomic():
        log.record_many(
            log.PendingEvent(
                DAY + timedelta(seconds=i), "agent", "bot", "x", None, {"i": i, "s": "t\tn\n\\é"}
            )
            for i in range(60)
        )
    intact = verify.verify_chain()
    assert intact.ok and intact.events == 60
    _tamper(*[(sql, []) for sql in statements])
    broken = verify.verify_chain()
    assert not broken.ok
    assert broken.first_bad_seq == bad_seq
    assert words in broken.problem
    assert broken.head_hash == AuditEvent.objects.get(seq=60).hash
    # The same findings, seams and all, as one sequential walk.
    monkeypatch.setattr(verify, "PARALLEL_FROM", 10**9)
    monkeypatch.setattr(verify, "BLOCK_BYTES", 1 << 30)
    sequential = verify.verify_chain()
    assert (broken.bad_events, broken.findings) == (sequential.bad_events, sequential.findings)
    assert broken.bad_events == bad_count


@pytest.mark.parametrize(
    "url",
    [
        "/audit/?since=2026-02-30",
        "/reports/?until=9999-12-31",
        "/reports/?since=2026-05-01&until=2026-04-01",
        "/audit/?proposal=not-a-uuid",
        "/audit/export.jsonl?proposal=x",
        "/reports/?since=2026-02-30",
        "/reports/latency.csv?until=2026-13-01",
    ],
)
def test_a_bad_filter_is_a_400_that_says_why(client, manager, url) -> None:
    client.force_login(manager)
    response = client.get(url)
    assert response.status_code == 400
    assert b"Bad filter" in response.content


def test_a_manager_verifies_the_chain_from_the_audit_page(client, manager, agent_with_key) -> None:
    from audit.models import VerificationRun

    factories.proposal(agent_with_key)
    client.force_login(manager)
    response = client.post("/audit/verify/", follow=True)
    assert response.status_code == 200
    assert b"Audit chain intact" in response.content
    assert VerificationRun.objects.get().ok


def test_an_analyst_cannot_run_the_verification(client, analyst) -> None:
    client.force_login(analyst)
    assert client.post("/audit/verify/").status_code == 403
