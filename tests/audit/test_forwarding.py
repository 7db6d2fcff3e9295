"""Forwarding the audit trail to a SIEM: syslog over TCP and TLS, HTTP Event Collector.

Real receivers on real sockets (tests/receivers.py); the forwarder runs in the test's process
and transaction. The 30-second outage under load is tests/fault/test_audit_forward_outage.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from audit import forward, log, siem
from audit.models import AuditEvent, ForwardCursor
from tests.processes import wait_for
from tests.receivers import (
    HecReceiver,
    SyslogReceiver,
    assert_delivered_in_order,
    self_signed_certificate,
    server_tls,
)

TOKEN = "hec-token-for-tests-0123456789"
# Syslog batches count as delivered this long after they were written (1 s when deployed).
SETTLE = 0.05

pytestmark = pytest.mark.django_db


def _record(n: int, **data: Any) -> None:
    for i in range(n):
        with transaction.atomic():
            log.record(event_type="test.forwarded", actor="bot", data={"i": i, **data})


def _chain() -> list[tuple[int, str]]:
    return list(AuditEvent.objects.order_by("seq").values_list("seq", "hash"))


def _forwarder(url: str, **options: Any) -> forward.Forwarder:
    """A forwarder as the test's one node: a new one takes over from the last at once."""
    options.setdefault("holder", "test-node")
    return forward.Forwarder(siem.Destination(url), settle=SETTLE, timeout=5, **options)


@pytest.fixture
def syslog() -> Iterator[SyslogReceiver]:
    with SyslogReceiver() as receiver:
        yield receiver
    assert not receiver.bad


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path / "tls")


def test_every_event_reaches_syslog_in_order_as_octet_counted_rfc5424(
    syslog: SyslogReceiver,
) -> None:
    _record(25, note="line one\n42 <110>1 - forged - - {}\r\nline two")
    forwarder = _forwarder(syslog.url, batch=7)
    head = forwarder.drain(timeout=10)
    chain = _chain()
    assert head == chain[-1][0]
    deliveries = syslog.got()
    assert [d.seq for d in deliveries] == [seq for seq, _ in chain]  # once each, in order
    assert_delivered_in_order(deliveries, chain)
    # Each message is the event as the export writes it, chain hashes included; a newline or
    # a syslog header inside the data stays inside its event.
    events = {event.seq: event for event in AuditEvent.objects.all()}
    for delivery in deliveries:
        assert delivery.record == events[delivery.seq].siem_record()
    cursor = ForwardCursor.objects.get(destination=siem.Destination(syslog.url).name)
    assert (cursor.seq, cursor.hash) == chain[-1]
    assert cursor.delivered_at is not None


def test_the_cursor_resumes_after_the_last_delivered_event(syslog: SyslogReceiver) -> None:
    _record(5)
    first = _forwarder(syslog.url)
    first.drain(timeout=10)
    first.release()
    _record(4)
    _forwarder(syslog.url).drain(timeout=10)  # another process, later
    deliveries = syslog.got()
    assert [d.seq for d in deliveries] == [seq for seq, _ in _chain()]  # nothing twice
    assert syslog.connections == 2


def test_a_receiver_that_crashes_gets_every_unconfirmed_event_again(
    syslog: SyslogReceiver,
) -> None:
    _record(12)
    forwarder = forward.Forwarder(siem.Destination(syslog.url), batch=5, timeout=5)
    assert forwarder.step() == 5  # written, not yet counted as delivered (1 s to settle)
    assert forwarder.cursor == 0
    syslog.stop()  # a crash: the connection is reset
    with pytest.raises((siem.DeliveryError, OSError)):
        for _ in range(50):  # the reset arrives within a few rounds
            forwarder.step()
    assert forwarder.cursor == 0 and forwarder.sent == 0
    with pytest.raises(ConnectionRefusedError):
        forwarder.step()  # still down
    syslog.start()
    forwarder.settle = SETTLE
    forwarder.drain(timeout=10)
    deliveries = syslog.got()
    assert_delivered_in_order(deliveries, _chain())
    repeated = Counter(d.seq for d in deliveries)
    assert set(repeated.values()) <= {1, 2}
    assert forwarder.resent >= 5


def test_tls_receivers_are_checked_against_the_ca_file(
    settings: Any, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    _record(6)
    with SyslogReceiver(tls=server_tls(*certificate)) as receiver:
        assert receiver.url.startswith("syslog+tls://")
        # Not trusted: the system's CAs do not know the receiver's certificate.
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            _forwarder(receiver.url).step()
        other, _key = self_signed_certificate(tmp_path / "other", name="other")
        settings.AUDIT_FORWARD_CA_FILE = str(other)
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            _forwarder(receiver.url).step()
        assert receiver.got() == []
        assert ForwardCursor.objects.get().seq == 0
        settings.AUDIT_FORWARD_CA_FILE = str(certificate[0])
        _forwarder(receiver.url).drain(timeout=10)
        assert_delivered_in_order(receiver.got(), _chain())
    assert not receiver.bad


def test_an_event_collector_gets_every_event_with_its_token(
    settings: Any, certificate: tuple[Path, Path]
) -> None:
    settings.AUDIT_FORWARD_TOKEN = TOKEN
    settings.AUDIT_FORWARD_CA_FILE = str(certificate[0])
    _record(30)
    with HecReceiver(token=TOKEN, tls=server_tls(*certificate)) as collector:
        forwarder = _forwarder(collector.url, batch=8)  # https://127.0.0.1:port, no path
        collector.answer = 503
        with pytest.raises(siem.DeliveryError, match="HTTP 503"):
            forwarder.step()
        assert forwarder.cursor == 0 and collector.got() == []
        collector.answer = 200
        forwarder.drain(timeout=10)
    deliveries = collector.got()
    assert [d.seq for d in deliveries] == [seq for seq, _ in _chain()]
    assert_delivered_in_order(deliveries, _chain())
    assert collector.connections == -(-len(_chain()) // 8)  # one POST per batch of 8
    first = deliveries[0].record
    assert first["sourcetype"] == "soc:audit"
    assert first["event"] == AuditEvent.objects.get(seq=deliveries[0].seq).siem_record()
    assert ForwardCursor.objects.get().seq == _chain()[-1][0]


def test_an_event_collector_refusing_the_token_moves_nothing(settings: Any) -> None:
    settings.AUDIT_FORWARD_TOKEN = "not-the-token"
    _record(3)
    with HecReceiver(token=TOKEN) as collector:
        with pytest.raises(siem.DeliveryError, match="HTTP 401"):
            _forwarder(collector.url).step()
        assert collector.refused == [(401, "Invalid token")]
    assert ForwardCursor.objects.get().seq == 0


def test_one_forwarder_at_a_time_works_a_destination(syslog: SyslogReceiver) -> None:
    _record(10)
    first = _forwarder(syslog.url, batch=4, holder="node-a")
    standby = _forwarder(syslog.url, batch=4, holder="node-b")
    assert first.step() == 4
    assert standby.step() == 0  # the lease is first's
    assert not standby.holding
    with pytest.raises(siem.DeliveryError, match="another forwarder"):
        standby.drain(timeout=1)
    first.drain(timeout=10)
    first.release()  # stopping hands over at once
    _record(2)
    standby.drain(timeout=10)
    assert_delivered_in_order(syslog.got(), _chain())
    assert [d.seq for d in syslog.got()] == [seq for seq, _ in _chain()]


def test_a_forwarder_whose_lease_was_taken_stops_and_its_cursor_stays(
    syslog: SyslogReceiver,
) -> None:
    _record(6)
    first = _forwarder(syslog.url, batch=3, holder="node-a")
    assert first.step() == 3
    # node-a stalled past its lease; node-b took the destination over.
    ForwardCursor.objects.update(lease_until=None)
    taker = _forwarder(syslog.url, batch=3, holder="node-b")
    taker.drain(timeout=10)
    assert first.step() == 0
    assert not first.holding and first.sender is None
    assert ForwardCursor.objects.get().holder == "node-b"
    assert_delivered_in_order(syslog.got(), _chain())


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    # Any text the log can record (NUL and lone surrogates it refuses, tests/audit).
    texts=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=3), max_size=3),
)
def test_any_data_arrives_as_recorded_and_crashes_lose_nothing(
    syslog: SyslogReceiver, texts: list[str], cuts: list[int]
) -> None:
    """Whatever agents put in an event, each arrives as one message equal to the recorded
    event; a receiver crashing after any number of batches loses none of them."""
    for text in texts:
        with transaction.atomic():
            log.record(event_type="test.forwarded", actor=text or "bot", data={"text": text})
    forwarder = _forwarder(syslog.url, batch=1)
    forwarder.settle = 60.0  # nothing settles before the crashes below
    for batches in cuts:
        for _ in range(batches):
            with contextlib.suppress(siem.DeliveryError, OSError):
                forwarder.step()  # after a crash, the first round finds the reset
        syslog.stop()
        syslog.start()
    forwarder.release()
    forwarder = _forwarder(syslog.url, batch=2)
    forwarder.drain(timeout=10)
    forwarder.release()
    chain = _chain()
    # Sent is not yet read: syslog over TCP has no answer, and the receiver's thread may still
    # be reading the last batch (it was, once, under a busy suite).
    wait_for(lambda: syslog.seqs() >= {seq for seq, _ in chain}, timeout=5, what="every event")
    deliveries = syslog.got()
    assert_delivered_in_order(deliveries, chain)
    events = {event.seq: event.siem_record() for event in AuditEvent.objects.all()}
    for delivery in deliveries:
        assert delivery.record == events[delivery.seq]


def test_the_command_forwards_everything_once_and_names_a_failure(
    settings: Any, syslog: SyslogReceiver
) -> None:
    _record(4)
    settings.AUDIT_FORWARD_URL = [syslog.url]
    call_command("forward_audit", "--once")
    assert [d.seq for d in syslog.got()] == [seq for seq, _ in _chain()]
    syslog.stop()
    _record(1)
    with pytest.raises(CommandError, match=re.escape(syslog.url) + ": .*refused"):
        call_command("forward_audit", "--once")


def test_metrics_show_how_far_each_destination_is_behind(
    client: Client, settings: Any, syslog: SyslogReceiver
) -> None:
    _record(7)
    settings.AUDIT_FORWARD_URL = [syslog.url]
    name = siem.Destination(syslog.url).name

    def lag() -> tuple[float, float]:
        response = client.get("/metrics")
        assert response.status_code == 200
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
            if sample.labels.get("destination") == name
        }
        return samples["soc_audit_forward_lag_events"], samples["soc_audit_forward_lag_seconds"]

    events, seconds = lag()
    assert events == len(_chain())
    assert seconds >= 0
    _forwarder(syslog.url).drain(timeout=10)
    assert lag() == (0, 0)


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"AUDIT_FORWARD_URL": "ftp://siem.example:21"}, "AUDIT_FORWARD_URL"),
        ({"AUDIT_FORWARD_URL": "syslog+tcp://siem.example"}, "AUDIT_FORWARD_URL"),
        ({"AUDIT_FORWARD_URL": "https://user:token@siem.example"}, "AUDIT_FORWARD_URL"),
        ({"AUDIT_FORWARD_URL": "https://siem.example:8088"}, "AUDIT_FORWARD_TOKEN"),
        ({"AUDIT_FORWARD_POLL_SECONDS": "0"}, "AUDIT_FORWARD_POLL_SECONDS"),
    ],
)
def test_bad_forwarding_settings_stop_start_up_naming_them(
    environment: dict[str, str], named: str
) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "soc_console.settings", **environment}
    env.pop("AUDIT_FORWARD_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert named in done.stderr


def test_the_audit_page_says_how_far_the_siem_has_got(
    client: Client, settings: Any, syslog: SyslogReceiver, manager: Any
) -> None:
    _record(5)
    settings.AUDIT_FORWARD_URL = [syslog.url]
    name = siem.Destination(syslog.url).name
    client.force_login(manager)
    page = client.get(reverse("audit")).content.decode()
    assert f"<code>{name}</code>" in page
    assert f"{len(_chain())} events waiting" in page
    assert "nothing delivered yet" in page
    _forwarder(syslog.url).drain(timeout=10)
    page = client.get(reverse("audit")).content.decode()
    assert "up to date" in page
    assert f"delivered up to #{_chain()[-1][0]}" in page


# The forwarder's thread reads over its own connection: the events must be committed.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_forwarder_that_stops_counts_what_it_wrote_and_hands_over(
    syslog: SyslogReceiver,
) -> None:
    _record(5)
    forwarder = forward.Forwarder(
        siem.Destination(syslog.url), holder="node-a", timeout=5, settle=0.5
    )
    stop = threading.Event()

    def run() -> None:
        try:
            forwarder.run(stop, poll=0.05)
        finally:
            connection.close()  # the thread's own session

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: len(syslog.seqs()) == len(_chain()), timeout=10, what="every event")
    finally:
        stop.set()  # as SIGTERM does, at once: the last batch has not settled yet
        thread.join(timeout=10)
    cursor = ForwardCursor.objects.get()
    assert (cursor.seq, cursor.hash) == _chain()[-1]
    assert (cursor.holder, cursor.lease_until) == ("", None)  # a standby may take over at once
