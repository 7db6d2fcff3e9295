"""/metrics: Prometheus text, figures that match the rows, and who may read them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from approvals import services, tasks
from approvals.models import Execution, Proposal
from audit import log
from audit.models import AuditEvent
from soc_console import metrics
from tests import factories

TOKEN = "scrape-token-for-tests-0123456789"


def scrape(client: Client, **extra: Any) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.django_db
def test_figures_match_the_rows(
    client: Client,
    responder: factories.AgentWithKey,
    analyst: User,
    analyst2: User,
    manager: User,
    settings: Any,
) -> None:
    settings.CONNECTOR_LATENCY_MS = 30
    high = factories.asset("ws-high.corp.example", criticality="high")
    low = factories.asset("ws-low.corp.example", criticality="low")
    # isolate_host (risk high, 3) × criticality × (0.5 + 0.7): 10.8 on a high asset, 3.6 on a
    # low one: the "high" and "low" bands.
    waiting = factories.proposal(responder, target=high.identifier)
    factories.proposal(responder, target=low.identifier)
    hour_ago = timezone.now() - timedelta(hours=1)
    Proposal.objects.filter(pk=waiting.pk).update(created_at=hour_ago)
    factories.proposal(responder, target="ws-flag.corp.example", confidence=0.3)  # flagged
    factories.proposal(responder, action="quarantine_email", target="msg-1@corp.example")

    # Approved 100 s after submission, and run: one connector call of at least 30 ms.
    ran = factories.proposal(responder, target="ws-run.corp.example")
    Proposal.objects.filter(pk=ran.pk).update(created_at=timezone.now() - timedelta(seconds=100))
    services.proposal_approve(proposal_id=ran.id, analyst=analyst, reason="confirmed")
    services.execution_run(execution_id=Execution.objects.get(proposal=ran).pk)
    # Rejected at once.
    rejected = factories.proposal(responder, action="block_ip", target="203.0.113.9")
    services.proposal_reject(proposal_id=rejected.id, analyst=analyst2, reason="known scanner")
    # Approved, then held by the emergency stop before a worker claims it.
    held = factories.proposal(responder, target="ws-held.corp.example")
    services.proposal_approve(proposal_id=held.id, analyst=analyst, reason="confirmed")
    services.emergency_stop_engage(by=manager, reason="drill")
    # The waiting one is escalated.
    Proposal.objects.filter(pk=waiting.pk).update(escalate_at=timezone.now())
    assert services.proposal_escalate(proposal_id=waiting.pk) is not None
    # A person's suspension is not a breaker trip; the system's is.
    services.agent_suspend(agent=responder.agent, by=manager, reason="noisy")
    with transaction.atomic():
        log.record(
            event_type="agent.suspended",
            actor="system",
            actor_type="system",
            data={"agent": responder.agent.slug, "reason": "max_pending exceeded"},
        )
    # Two task messages waiting in the broker for a worker.
    tasks.heartbeat.delay()
    tasks.heartbeat.delay()

    samples = scrape(client)

    assert value(samples, "soc_proposals_pending", band="high") == 1
    assert value(samples, "soc_proposals_pending", band="low") == 1
    assert value(samples, "soc_proposals_pending", band="medium") == 0
    assert value(samples, "soc_proposals_pending", band="critical") == 0
    age = value(samples, "soc_proposals_pending_oldest_age_seconds")
    assert 3600 <= age < 3600 + 30
    routed = {k[1][0][1]: v for k, v in samples.items() if k[0] == "soc_proposals_routed_total"}
    assert routed == {"pending": 5, "flagged": 1, "blocked": 1}

    approve = {"action": "isolate_host", "verdict": "approve"}
    assert value(samples, "soc_decision_seconds_count", **approve) == 2
    assert value(samples, "soc_decision_seconds_bucket", le="60", **approve) == 1  # held: at once
    assert value(samples, "soc_decision_seconds_bucket", le="120", **approve) == 2
    assert 100 <= value(samples, "soc_decision_seconds_sum", **approve) < 130
    reject = {"action": "block_ip", "verdict": "reject"}
    assert value(samples, "soc_decision_seconds_count", **reject) == 1
    assert value(samples, "soc_decision_seconds_bucket", le="5", **reject) == 1

    assert value(samples, "soc_execution_transitions_total", status="running") == 1
    assert value(samples, "soc_execution_transitions_total", status="succeeded") == 1
    assert value(samples, "soc_execution_transitions_total", status="held") == 1
    assert value(samples, "soc_executions", status="held") == 1
    assert value(samples, "soc_executions", status="queued") == 0
    assert value(samples, "soc_executions", status="running") == 0
    call = {"connector": "edr", "outcome": "succeeded"}
    assert value(samples, "soc_connector_call_seconds_count", **call) == 1
    assert value(samples, "soc_connector_call_seconds_bucket", le="0.025", **call) == 0
    assert value(samples, "soc_connector_call_seconds_sum", **call) >= 0.03

    assert value(samples, "soc_escalations_total") == 1
    assert value(samples, "soc_holds_total", why="emergency stop") == 1
    assert value(samples, "soc_emergency_stop_engaged") == 1
    assert value(samples, "soc_agents_suspended") == 1
    assert value(samples, "soc_breaker_trips_total") == 1
    assert value(samples, "soc_audit_events_total") == AuditEvent.objects.count()
    assert value(samples, "soc_audit_events_folded_total") == AuditEvent.objects.count()
    assert (
        value(samples, "soc_celery_queue_messages", queue=settings.CELERY_TASK_DEFAULT_QUEUE) == 2
    )
    assert value(samples, "soc_consoles_connected") == 0
    for part in metrics.SECTIONS:
        assert value(samples, "soc_metrics_up", part=part) == 1


@pytest.mark.django_db
def test_an_undone_approval_is_counted_as_undone(
    client: Client, responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    settings.APPROVAL_UNDO_SECONDS = 30
    proposal = factories.proposal(responder, target="ws-undo.corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst, reason="confirmed")
    services.approval_undo(proposal_id=proposal.id, analyst=analyst)
    samples = scrape(client)
    assert value(samples, "soc_approvals_undone_total", action="isolate_host") == 1
    # The approval was given (and its time measured); the proposal is pending again.
    labels = {"action": "isolate_host", "verdict": "approve"}
    assert value(samples, "soc_decision_seconds_count", **labels) == 1
    assert sum(v for k, v in samples.items() if k[0] == "soc_proposals_pending") == 1


@pytest.mark.django_db
def test_counters_follow_new_events_and_never_count_one_twice(
    client: Client, responder: factories.AgentWithKey, analyst: User
) -> None:
    first = factories.proposal(responder, target="ws-1.corp.example")
    before = scrape(client)
    assert value(before, "soc_proposals_routed_total", outcome="pending") == 1
    services.proposal_reject(proposal_id=first.id, analyst=analyst, reason="false positive")
    factories.proposal(responder, target="ws-2.corp.example")
    for _ in range(2):  # a second scrape with nothing new changes nothing
        after = scrape(client)
        assert value(after, "soc_proposals_routed_total", outcome="pending") == 2
        labels = {"action": "isolate_host", "verdict": "reject"}
        assert value(after, "soc_decision_seconds_count", **labels) == 1


@pytest.mark.django_db
def test_totals_from_another_history_are_thrown_away(
    client: Client, responder: factories.AgentWithKey
) -> None:
    factories.proposal(responder, target="ws-1.corp.example")
    assert value(scrape(client), "soc_proposals_routed_total", outcome="pending") == 1
    # The stored totals claim a last event this database does not have (another database, or
    # a history that was reset): they are not added to, they are rebuilt.
    store = metrics._redis()
    forged = json.loads(store.get(metrics._fold_key()))
    forged["routed"]["pending"] = 40
    forged["hash"] = "0" * 64
    store.set(metrics._fold_key(), json.dumps(forged))
    assert value(scrape(client), "soc_proposals_routed_total", outcome="pending") == 1


@pytest.mark.django_db
def test_a_large_history_is_folded_over_several_scrapes_without_double_counting(
    client: Client, responder: factories.AgentWithKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(7):
        factories.proposal(responder, target=f"ws-{n}.corp.example", settle=False)
    monkeypatch.setattr(metrics, "FOLD_BATCH", 2)
    monkeypatch.setattr(metrics, "FOLD_SECONDS", 0.0)  # one batch per scrape
    seen = []
    for _ in range(8):
        samples = scrape(client)
        seen.append(value(samples, "soc_audit_events_folded_total"))
    total = AuditEvent.objects.count()
    assert seen == sorted(seen)
    assert seen[0] == 2
    assert seen[-1] == total
    assert value(samples, "soc_proposals_routed_total", outcome="pending") == 7


# --- who may read them ----------------------------------------------------------------------


@pytest.mark.django_db
def test_without_a_token_loopback_reads_and_others_are_refused(client: Client) -> None:
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert refused.status_code == 403
    assert b"soc_" not in refused.content


@pytest.mark.django_db
def test_with_a_token_only_its_bearer_reads(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    anonymous = client.get("/metrics", REMOTE_ADDR="127.0.0.1")  # loopback is no longer enough
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert wrong.status_code == 403
    right = client.get("/metrics", REMOTE_ADDR="10.0.0.5", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert right.status_code == 200
    assert b"soc_proposals_pending" in right.content


def _refused(status: int, content: bytes) -> bool:
    return status in (401, 403) and b"soc_" not in content


@hypothesis_settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.text(max_size=80))
def test_any_authorization_but_the_token_is_refused(header: str) -> None:
    if header.strip().lower().startswith("bearer") and header.split(None, 1)[-1:] == [TOKEN]:
        return
    request = RequestFactory().get("/metrics", HTTP_AUTHORIZATION=header, REMOTE_ADDR="127.0.0.1")
    with override_settings(METRICS_TOKEN=TOKEN):
        response = metrics.metrics(request)
    assert _refused(response.status_code, response.content)


@hypothesis_settings(max_examples=200)
@given(
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).filter(
        lambda a: not a.is_loopback
    ),
    header=st.one_of(st.none(), st.just(f"Bearer {TOKEN}"), st.text(max_size=40)),
)
def test_without_a_token_no_address_but_loopback_reads(address: Any, header: str | None) -> None:
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    request = RequestFactory().get("/metrics", REMOTE_ADDR=str(address), **extra)
    with override_settings(METRICS_TOKEN=""):
        response = metrics.metrics(request)
    assert _refused(response.status_code, response.content)
