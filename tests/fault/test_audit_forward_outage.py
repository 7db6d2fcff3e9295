"""The SIEM down for 30 s under load: a syslog receiver over TCP, one over TLS and an HTTP Event
Collector, all three stopped at once (the syslog ones reset their connections, as a crash
would) while agents post proposals and an analyst rejects them through the served API, then
started again on the same ports.

The Procfile's `forward` process (a real `manage.py forward_audit`) must deliver every audit
event to each of them, in order on each connection, an event sent twice being the same event
(seq and hash); the API must answer every call meanwhile.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from approvals.models import Proposal
from audit import siem
from audit.models import AuditEvent, ForwardCursor
from tests import factories, processes
from tests.receivers import (
    HecReceiver,
    SyslogReceiver,
    assert_delivered_in_order,
    self_signed_certificate,
    server_tls,
)

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 30
TOKEN = "hec-token-for-the-outage-0123456789"


@dataclass
class Load:
    phase: str = "before"
    # (phase, what, status, seconds)
    calls: list[tuple[str, str, int, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, what: str, call: Callable[[], httpx.Response]) -> httpx.Response:
        started = time.monotonic()
        response = call()
        with self.lock:
            self.calls.append((self.phase, what, response.status_code, time.monotonic() - started))
        return response

    def seconds(self, phase: str) -> list[float]:
        with self.lock:
            return sorted(s for p, _, _, s in self.calls if p == phase)


def _agents(url: str, key: str, load: Load, stop: threading.Event, lane: int) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        n = 0
        while not stop.is_set():
            n += 1
            body = {
                "action": "block_ip",
                "target": f"203.0.{lane * 50 + n // 250}.{n % 250 + 1}",
                "params": {"duration_minutes": 30},
                "confidence": 0.7,
                "rationale": "Beaconing every 60 s to a known C2 address.",
                "evidence": [{"kind": "alert", "ref": f"SIEM-{lane}-{n}"}],
            }
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            load.timed(
                "proposal", partial(c.post, "/api/v1/proposals/", json=body, headers=headers)
            )
            time.sleep(0.03)


def _analyst(url: str, token: str, load: Load, stop: threading.Event) -> None:
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Token {token}"}, timeout=30
        ) as client:
            while not stop.is_set():
                pending = list(
                    Proposal.objects.filter(status="pending")
                    .order_by("created_at")
                    .values_list("pk", flat=True)[:3]
                )
                for pk in pending:
                    body = {"verdict": "reject", "reason": "Known scanner, allow-listed."}
                    decide = partial(client.post, f"/api/v1/proposals/{pk}/decisions/", json=body)
                    load.timed("decision", decide)
                time.sleep(0.1)
    finally:
        connection.close()  # this thread's own session


def _lag(url: str) -> dict[str, float]:
    """soc_audit_forward_lag_events by destination, as a scrape of /metrics reads it."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        sample.labels["destination"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "soc_audit_forward_lag_events"
    }


def _p(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")


def test_a_siem_down_for_30_s_under_load_gets_every_event_after(
    celery_environment: processes.CeleryEnvironment,
    responder: factories.AgentWithKey,
    analyst: User,
    tmp_path: Path,
) -> None:
    cert, key = self_signed_certificate(tmp_path / "tls")
    receivers = {
        "syslog+tcp": SyslogReceiver().start(),
        "syslog+tls": SyslogReceiver(tls=server_tls(cert, key)).start(),
        "hec": HecReceiver(token=TOKEN, tls=server_tls(cert, key)).start(),
    }
    started: list[processes.ManagedProcess] = []
    stop = threading.Event()
    load = Load()
    threads: list[threading.Thread] = []
    try:
        # As deployed, every process has the forwarding settings: the web server's /metrics
        # reports the lag.
        forwarding = {
            "AUDIT_FORWARD_URL": ",".join(r.url for r in receivers.values()),
            "AUDIT_FORWARD_TOKEN": TOKEN,
            "AUDIT_FORWARD_CA_FILE": str(cert),
            "AUDIT_FORWARD_POLL_SECONDS": "0.2",
            "AUDIT_FORWARD_TIMEOUT_SECONDS": "5",
        }
        web, url = processes.start_web(
            celery_environment,
            log_dir=tmp_path,
            LOG_LEVEL="WARNING",
            API_RATE_LIMIT_PER_MINUTE="100000",
            **forwarding,
        )
        started.append(web)
        forwarder = processes.start_forwarder(celery_environment, log_dir=tmp_path, **forwarding)
        started.append(forwarder)
        token = Token.objects.create(user=analyst).key
        threads = [
            threading.Thread(target=_agents, args=(url, responder.raw_key, load, stop, lane))
            for lane in range(2)
        ]
        threads.append(threading.Thread(target=_analyst, args=(url, token, load, stop)))
        for thread in threads:
            thread.start()

        # Forwarding works: each receiver has events.
        processes.wait_for(
            lambda: all(len(r.got()) >= 20 for r in receivers.values()),
            timeout=30,
            what="the first events at every receiver",
        )
        load.phase = "outage"
        for receiver in receivers.values():
            receiver.stop()
        head_at_stop = AuditEvent.objects.count()
        time.sleep(OUTAGE_SECONDS)  # the outage itself; the load goes on
        assert forwarder.alive(), forwarder.log()[-2000:]
        head_at_restart = AuditEvent.objects.count()
        behind_at_restart = _lag(url)  # scraped after the count: it is at least this far behind
        for receiver in receivers.values():
            receiver.start()
        restarted = time.monotonic()
        load.phase = "after"
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        chain = list(AuditEvent.objects.order_by("seq").values_list("seq", "hash"))
        head = chain[-1][0]

        drained: dict[str, float] = {}

        def caught_up() -> bool:
            for name, receiver in receivers.items():
                if name not in drained and receiver.seqs() >= set(range(1, head + 1)):
                    drained[name] = time.monotonic() - restarted
            return len(drained) == len(receivers)

        processes.wait_for(caught_up, timeout=60, interval=0.1, what="every event delivered")
        # ... and counted as delivered: the cursors reach the head, /metrics says so.
        processes.wait_for(
            lambda: set(_lag(url).values()) == {0.0}, timeout=10, what="no lag on /metrics"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for process in started:
            process.stop()
        for receiver in receivers.values():
            receiver.stop()

    before, during = load.seconds("before"), load.seconds("outage")
    outage_events = head_at_restart - head_at_stop
    lines = [
        f"events: {head} in the chain, {outage_events} of them recorded during the "
        f"{OUTAGE_SECONDS} s outage",
        f"API calls: {len(load.calls)}; median/p95 before {statistics.median(before):.3f}/"
        f"{_p(before, 0.95):.3f} s, during the outage {statistics.median(during):.3f}/"
        f"{_p(during, 0.95):.3f} s",
    ]
    for name, receiver in receivers.items():
        got = receiver.got()
        lines.append(
            f"{name}: {len(got)} deliveries, {len(got) - len(receiver.seqs())} duplicates, "
            f"{receiver.connections} connections/POSTs, drained {drained[name]:.1f} s after "
            "the restart"
        )
    print("\n".join(lines))

    # Every event delivered, in order on each connection, a repeat being the same event.
    for name, receiver in receivers.items():
        assert_delivered_in_order(receiver.got(), chain)
        assert not getattr(receiver, "bad", []), name
    # The cursors stand at the head; during the outage /metrics showed the backlog.
    cursors = dict(ForwardCursor.objects.values_list("destination", "seq"))
    for receiver in receivers.values():
        name = siem.Destination(receiver.url).name
        assert cursors[name] == head
        assert behind_at_restart[name] >= head_at_restart - head_at_stop
    # The API answered every call, during the outage as before it.
    statuses = {(what, status) for _, what, status, _ in load.calls}
    assert statuses <= {("proposal", 201), ("decision", 201), ("decision", 409)}, statuses
    assert len(during) > 100
    assert outage_events > 100
