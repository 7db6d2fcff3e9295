"""Redis stopped for 10 s under a load of agents' calls and analysts' decisions, against the served
API with real workers: no call answers a 500 or HTML (the rate limit counts per process
meanwhile and says so once), and every execution approved before, during or after the outage
runs once Redis is back (the sweeper dispatches what could not be enqueued)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authtoken.models import Token

from approvals.models import ConnectorCall, Execution, ExecutionStatus, Proposal
from tests import factories
from tests.fault.conftest import Fleet
from tests.processes import PrivateRedis, start_web, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 10


@dataclass
class Answers:
    """Every answer the load got: (phase, method and path kind, status, content type)."""

    phase: str = "before"
    seen: list[tuple[str, str, int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        with self.lock:
            self.seen.append((self.phase, what, response.status_code, content_type))
        bad = response.status_code >= 500 and (
            response.status_code != 503 or "Retry-After" not in response.headers
        )
        if bad or (response.status_code >= 400 and content_type != "application/problem+json"):
            with self.lock:
                self.failures.append(f"{what}: {response.status_code} {response.text[:200]}")


def _agent_load(url: str, key: str, confidence: float, answers: Answers, stop: Any) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        n = 0
        while not stop.is_set():
            n += 1
            body = {
                "action": "block_ip",
                "target": f"198.18.{n // 250}.{n % 250 + 1}",
                "params": {"duration_minutes": 30},
                "confidence": confidence,
                "rationale": "Port scan from this address across the DMZ.",
                "evidence": [{"kind": "alert", "ref": f"SIEM-{n}"}],
            }
            submitted = client.post(
                "/api/v1/proposals/", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            answers.add("POST proposals", submitted)
            answers.add("GET proposals", client.get("/api/v1/proposals/?status=pending"))
            if submitted.status_code == 201:
                detail = client.get(f"/api/v1/proposals/{submitted.json()['id']}/")
                answers.add("GET proposal", detail)
            time.sleep(0.05)


def _analyst_load(url: str, token: str, answers: Answers, stop: Any) -> None:
    headers = {"Authorization": f"Token {token}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not stop.is_set():
                pending = Proposal.objects.filter(status="pending").values_list("pk", flat=True)
                for pk in pending[:3]:
                    decided = client.post(
                        f"/api/v1/proposals/{pk}/decisions/", json={"verdict": "approve"}
                    )
                    answers.add("POST decision", decided)
                time.sleep(0.1)
    finally:
        connection.close()  # this thread's own session


def test_redis_down_under_agent_load_answers_no_500_and_loses_no_execution(
    fleet: Fleet,
    responder: factories.AgentWithKey,
    analyst: User,
    private_redis: PrivateRedis,
) -> None:
    # One web process, so that "once per outage" is one line in one log.
    # A rate limit no agent here reaches: every refusal would be a 429, not what is tested.
    web, url = start_web(
        fleet.environment,
        log_dir=fleet.log_dir,
        LOG_LEVEL="WARNING",
        API_RATE_LIMIT_PER_MINUTE="100000",
    )
    fleet.started.append(web)
    fleet.worker(concurrency=2)
    fleet.beat()
    # Executes at once; the load is the point here, not the breaker or the budget.
    auto = factories.agent(
        "auto-blocker",
        grants={"block_ip": 3},
        budgets={"block_ip": (10**6, 10**6)},
        max_pending=10**6,
        max_proposals_per_minute=10**6,
    )
    token = Token.objects.create(user=analyst).key
    answers = Answers()
    stop = threading.Event()
    load = [
        threading.Thread(target=_agent_load, args=(url, responder.raw_key, 0.8, answers, stop)),
        threading.Thread(target=_agent_load, args=(url, auto.raw_key, 0.95, answers, stop)),
        threading.Thread(target=_analyst_load, args=(url, token, answers, stop)),
    ]
    for thread in load:
        thread.start()
    try:
        time.sleep(3)
        answers.phase = "outage"
        private_redis.stop()
        time.sleep(OUTAGE_SECONDS)
        private_redis.start()
        answers.phase = "after"
        time.sleep(4)
    finally:
        stop.set()
        for thread in load:
            thread.join(timeout=60)

    assert answers.failures == [], answers.failures[:10]
    statuses = Counter((phase, status) for phase, _, status, _ in answers.seen)
    assert not any(status == 500 for _, status in statuses), statuses
    # Agents' calls went on working through the outage, writes included.
    during = Counter(
        what for phase, what, status, _ in answers.seen if phase == "outage" and status < 300
    )
    assert during["POST proposals"] >= 20, statuses
    assert during["GET proposals"] >= 20, statuses
    assert during["POST decision"] >= 1, statuses

    # The rate limit said once that it counts per process, and once that Redis is back.
    log = web.log()
    assert log.count("rate limit: Redis is not answering") == 1, log[-3000:]
    assert log.count("rate limit: Redis answers again") == 1, log[-3000:]

    # Nothing approved is lost: what the outage kept from the broker, the sweeper dispatched.
    approved = Execution.objects.count()
    assert approved >= 20
    try:
        wait_for(
            lambda: Execution.objects.filter(status=ExecutionStatus.SUCCEEDED).count() == approved,
            timeout=60,
            interval=0.5,
        )
    except TimeoutError:
        left = Counter(Execution.objects.values_list("status", flat=True))
        raise AssertionError(f"not every execution ran: {dict(left)}") from None
    ledger = Counter(ConnectorCall.objects.values_list("idempotency_key", flat=True))
    assert set(ledger.values()) == {1}  # each took effect once
    # Both agents block the same addresses: a block already in place is not performed again
    # (its execution says so and leaves no ledger row). Every other execution called once.
    in_place = Execution.objects.filter(result__already_in_place=True)
    performed = Execution.objects.exclude(pk__in=in_place.values("pk"))
    assert set(ledger) == set(performed.values_list("idempotency_key", flat=True))
    assert len(ledger) + in_place.count() == approved
