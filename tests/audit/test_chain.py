from __future__ import annotations

import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from audit import log, verify
from audit.models import AuditEvent
from tests import factories


def _append(n: int, actor: str) -> None:
    for i in range(n):
        with transaction.atomic():
            log.record(event_type="test.event", actor=actor, data={"i": i})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_is_refused() -> None:
    with pytest.raises(RuntimeError):
        log.record(event_type="x", actor="y")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_linear_chain() -> None:
    threads = [threading.Thread(target=_append, args=(20, f"t{i}")) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connection.close()
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, 81))
    for previous, current in zip(events, events[1:], strict=False):
        assert current.prev_hash == previous.hash
    result = verify.verify_chain()
    assert result.ok, result.problem
    assert result.events == 80


@pytest.mark.django_db
def test_verify_audit_command_prints_head_hash(agent_with_key, capsys) -> None:
    factories.proposal(agent_with_key)
    call_command("verify_audit")
    out = capsys.readouterr().out
    head = AuditEvent.objects.order_by("-seq").first()
    assert "intact" in out
    assert head.hash in out


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


@pytest.mark.postgres
@pytest.mark.django_db
def test_modified_event_is_named(agent_with_key) -> None:
    for _ in range(3):
        factories.proposal(agent_with_key)
    victim = AuditEvent.objects.order_by("seq")[2]
    _tamper(
        "UPDATE audit_auditevent SET data = %s WHERE seq = %s",
        ['{"tampered": true}', victim.seq],
    )
    result = verify.verify_chain()
    assert not result.ok
    assert result.first_bad_seq == victim.seq
    assert "modified" in result.problem
    with pytest.raises(CommandError, match=f"BROKEN at event #{victim.seq}"):
        call_command("verify_audit")


@pytest.mark.postgres
@pytest.mark.django_db
def test_removed_event_is_named(agent_with_key) -> None:
    for _ in range(3):
        factories.proposal(agent_with_key)
    victim = AuditEvent.objects.order_by("seq")[3]
    _tamper("DELETE FROM audit_auditevent WHERE seq = %s", [victim.seq])
    result = verify.verify_chain()
    assert not result.ok
    assert result.first_bad_seq == victim.seq
    assert "missing" in result.problem


@pytest.mark.django_db
def test_update_and_delete_are_refused_by_the_database(agent_with_key) -> None:
    factories.proposal(agent_with_key)
    event = AuditEvent.objects.order_by("seq").first()
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor="someone-else")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    event.refresh_from_db()
    assert event.actor != "someone-else"
