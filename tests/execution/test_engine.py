"""Claim, run, retry, fail, hold, fence and recover: the execution lifecycle of DESIGN §5."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, EmergencyStop
from approvals import connectors, services, sql, tasks
from approvals.models import ConnectorCall, Execution, ExecutionStatus
from approvals.selectors import proposal_detail, proposal_payload
from audit.models import AuditEvent
from soc_console.errors import InvalidInput, NotPermitted, WrongState
from tests import factories
from tests.execution.conftest import approved, broker_messages

pytestmark = pytest.mark.django_db


def events(execution: Execution, prefix: str = "execution.") -> list[str]:
    return list(
        AuditEvent.objects.filter(proposal_id=execution.proposal_id, event_type__startswith=prefix)
        .order_by("seq")
        .values_list("event_type", flat=True)
    )


@pytest.fixture
def no_backoff(settings: Any) -> None:
    # Retries become due at once, so the test can run them without waiting.
    settings.EXECUTION_BACKOFF_BASE_SECONDS = 0


def test_approval_creates_a_queued_execution_and_enqueues_it_on_commit(
    responder: factories.AgentWithKey,
    analyst: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        execution = approved(responder, analyst, action="block_ip", target="203.0.113.7")
    assert execution.status == ExecutionStatus.QUEUED
    assert execution.attempts == 0
    sent = [m for m in broker_messages() if m["task"] == "approvals.tasks.run_execution"]
    assert sent == [{"task": "approvals.tasks.run_execution", "args": [str(execution.id)]}]


def test_nothing_is_enqueued_when_the_approval_rolls_back(
    responder: factories.AgentWithKey, analyst: User, django_capture_on_commit_callbacks: Any
) -> None:
    proposal = factories.proposal(responder, action="block_ip", target="203.0.113.8")
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
        raise RuntimeError("the request failed after the approval")
    assert not Execution.objects.exists()
    assert broker_messages() == []


def test_approved_action_runs_through_the_connector_and_succeeds(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.7")

    assert tasks.run_execution(str(execution.id)) == "succeeded"

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.attempts == 1
    assert execution.lease_until is None
    assert execution.result["after"] == {"blocked": True}
    assert connectors.state_of("firewall", "203.0.113.7") == {"blocked": True}
    call = ConnectorCall.objects.get()
    assert call.idempotency_key == execution.idempotency_key
    assert events(execution) == ["execution.started", "execution.succeeded"]
    seen_by_agent = proposal_payload(execution.proposal)["execution"]
    assert seen_by_agent["status"] == "succeeded"
    assert seen_by_agent["attempts"] == 1


def test_running_an_execution_twice_has_one_effect(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="reset_password", target="jdoe@corp.example")
    tasks.run_execution(str(execution.id))
    # A duplicate message (the sweeper re-dispatched, Redis redelivered) finds nothing to claim.
    assert tasks.run_execution(str(execution.id)) is None
    assert ConnectorCall.objects.count() == 1
    assert connectors.state_of("identity", "jdoe@corp.example") == {"password_resets": 1}
    assert events(execution).count("execution.started") == 1


def test_auto_approved_proposal_executes_without_a_human(analyst: User) -> None:
    bot = factories.agent("auto-bot", grants={"block_ip": 3})
    proposal = factories.proposal(bot, action="block_ip", target="203.0.113.20", confidence=0.97)
    assert proposal.status == "auto_approved"
    tasks.run_execution(str(proposal.execution.id))
    proposal.execution.refresh_from_db()
    assert proposal.execution.status == ExecutionStatus.SUCCEEDED
    assert connectors.state_of("firewall", "203.0.113.20") == {"blocked": True}


def test_transient_failure_succeeds_on_retry_with_attempts_counted(
    responder: factories.AgentWithKey, analyst: User, no_backoff: None
) -> None:
    execution = approved(
        responder, analyst, action="isolate_host", target="flaky-ws-3.corp.example"
    )

    statuses = [tasks.run_execution(str(execution.id)) for _ in range(3)]

    assert statuses == ["queued", "queued", "succeeded"]
    execution.refresh_from_db()
    assert execution.attempts == 3
    assert execution.error == ""
    assert connectors.state_of("edr", "flaky-ws-3.corp.example") == {"isolated": True}
    assert ConnectorCall.objects.count() == 1
    assert events(execution) == [
        "execution.started",
        "execution.retry_scheduled",
        "execution.started",
        "execution.retry_scheduled",
        "execution.started",
        "execution.succeeded",
    ]
    retry = AuditEvent.objects.filter(event_type="execution.retry_scheduled").first()
    assert "timed out" in retry.data["error"]


def test_retry_waits_out_a_capped_exponential_backoff(
    responder: factories.AgentWithKey,
    analyst: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.EXECUTION_BACKOFF_BASE_SECONDS = 2
    settings.EXECUTION_BACKOFF_MAX_SECONDS = 5
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 4)] == [2, 4, 5, 5]
    execution = approved(responder, analyst, action="block_ip", target="198.51.100.10")

    with django_capture_on_commit_callbacks(execute=True):
        tasks.run_execution(str(execution.id))

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED
    wait = (execution.not_before - timezone.now()).total_seconds()
    assert 1 < wait <= 2
    # A message that arrives before the backoff is over claims nothing.
    assert tasks.run_execution(str(execution.id)) is None
    assert execution.attempts == 1
    retry = [m for m in broker_messages() if m["task"] == "approvals.tasks.run_execution"]
    assert retry == [{"task": "approvals.tasks.run_execution", "args": [str(execution.id)]}]


def test_permanent_failure_is_recorded_and_senior_analysts_are_mailed(
    responder: factories.AgentWithKey,
    analyst: User,
    senior: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    execution = approved(
        responder, analyst, action="isolate_host", target="broken-db1.corp.example"
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.run_execution(str(execution.id)) == "failed"

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert execution.attempts == 1
    assert "refused" in execution.error
    assert connectors.state_of("edr", "broken-db1.corp.example") == {}
    failed = AuditEvent.objects.get(event_type="execution.failed")
    assert failed.data["error"] == execution.error
    assert proposal_payload(execution.proposal)["execution"]["error"] == execution.error
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [senior.email]
    assert "broken-db1.corp.example" in mail.outbox[0].subject
    assert execution.error in mail.outbox[0].body


def test_exhausted_retries_fail_with_the_count_in_the_error(
    responder: factories.AgentWithKey, analyst: User, settings: Any, no_backoff: None
) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 2
    execution = approved(responder, analyst, action="block_ip", target="198.51.100.11")

    statuses = [tasks.run_execution(str(execution.id)) for _ in range(2)]

    assert statuses == ["queued", "failed"]
    execution.refresh_from_db()
    assert execution.attempts == 2
    assert "gave up after 2 attempts" in execution.error
    assert not ConnectorCall.objects.exists()


def test_emergency_stop_holds_queued_executions_until_an_analyst_reconfirms(
    responder: factories.AgentWithKey, analyst: User, manager: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.30")

    services.emergency_stop_engage(by=manager, reason="agent misbehaving")
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.HELD
    engaged = AuditEvent.objects.get(event_type="emergency_stop.engaged")
    assert engaged.data["held_executions"] == [str(execution.id)]
    assert tasks.run_execution(str(execution.id)) is None
    with pytest.raises(WrongState):
        services.execution_reconfirm_held(execution_id=execution.id, analyst=analyst)

    services.emergency_stop_release(by=manager, reason="fixed")
    # Lifting the stop does not start anything by itself.
    assert tasks.run_execution(str(execution.id)) is None
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.HELD
    assert not ConnectorCall.objects.exists()

    services.execution_reconfirm_held(execution_id=execution.id, analyst=analyst)
    assert tasks.run_execution(str(execution.id)) == "succeeded"
    assert connectors.state_of("firewall", "203.0.113.30") == {"blocked": True}
    reconfirmed = AuditEvent.objects.get(event_type="execution.reconfirmed")
    assert reconfirmed.actor == analyst.username


def test_a_held_execution_is_cancelled_with_a_reason_and_never_runs(
    responder: factories.AgentWithKey, analyst: User, analyst2: User, manager: User
) -> None:
    # After a stop for a suspected compromise, what was approved before it may be what nobody
    # wants run now: it is declined, during the stop or after it.
    execution = approved(
        responder, analyst, action="disable_user", target="svc-backup@corp.example"
    )
    services.emergency_stop_engage(by=manager, reason="suspected compromised EDR connector")
    with pytest.raises(InvalidInput) as refused:
        services.execution_cancel_held(execution_id=execution.id, analyst=analyst2, reason=" ")
    assert "reason" in refused.value.extra["errors"]
    with pytest.raises(NotPermitted):
        services.execution_cancel_held(
            execution_id=execution.id, analyst=manager, reason="not while compromised"
        )

    cancelled = services.execution_cancel_held(
        execution_id=execution.id, analyst=analyst2, reason="not while compromised"
    )
    assert cancelled.status == ExecutionStatus.CANCELLED and cancelled.finished_at is not None
    event = AuditEvent.objects.get(event_type="execution.cancelled")
    assert (event.actor, event.data["reason"]) == ("bob", "not while compromised")
    assert event.data["status"] == "cancelled"
    # Nothing runs it: not the lifted stop, not a re-confirmation, not a retry, not the sweep.
    services.emergency_stop_release(by=manager, reason="connector rotated")
    with pytest.raises(WrongState):
        services.execution_reconfirm_held(execution_id=execution.id, analyst=analyst)
    with pytest.raises(WrongState):
        services.execution_retry(execution_id=execution.id, analyst=analyst)
    with pytest.raises(WrongState) as again:
        services.execution_cancel_held(execution_id=execution.id, analyst=analyst, reason="twice")
    assert "cancelled, not held" in again.value.detail
    assert tasks.run_execution(str(execution.id)) is None
    assert not ConnectorCall.objects.exists()
    payload = proposal_payload(proposal_detail(execution.proposal_id))
    assert payload["execution"]["status"] == "cancelled"


def test_only_a_held_execution_is_cancelled(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.36")
    with pytest.raises(WrongState) as refused:
        services.execution_cancel_held(execution_id=execution.id, analyst=analyst, reason="nope")
    assert "queued, not held" in refused.value.detail
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED


def test_approval_while_the_stop_is_engaged_is_held_at_once(
    responder: factories.AgentWithKey,
    analyst: User,
    manager: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    proposal = factories.proposal(responder, action="block_ip", target="203.0.113.31")
    services.emergency_stop_engage(by=manager, reason="incident review")
    with django_capture_on_commit_callbacks(execute=True):
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    assert execution.status == ExecutionStatus.HELD
    # Not sent to a worker: nothing would run it until an analyst re-confirms.
    assert [m for m in broker_messages() if m["task"] == "approvals.tasks.run_execution"] == []
    events = list(
        AuditEvent.objects.filter(proposal_id=proposal.id).values_list("event_type", flat=True)
    )
    assert events[-2:] == ["proposal.approved", "execution.held"]
    held = AuditEvent.objects.get(event_type="execution.held")
    assert held.data["why"] == "emergency stop" and held.actor == "system"
    assert tasks.run_execution(str(execution.id)) is None
    assert not ConnectorCall.objects.exists()


def test_a_suspension_holds_what_was_approved_and_refuses_what_waits(
    responder: factories.AgentWithKey, analyst: User, manager: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.34")
    waiting = factories.proposal(responder, action="block_ip", target="203.0.113.35")
    services.agent_suspend(agent=responder.agent, by=manager, reason="rogue")

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.HELD
    held = AuditEvent.objects.get(event_type="execution.held", proposal_id=execution.proposal_id)
    assert held.data["why"] == "agent suspended"
    assert tasks.run_execution(str(execution.id)) is None
    # A suspended agent's waiting card cannot be approved at all.
    with pytest.raises(WrongState) as refused:
        services.proposal_approve(proposal_id=waiting.id, analyst=analyst)
    assert refused.value.code == "agent_suspended"
    assert not Execution.objects.filter(proposal=waiting).exists()
    assert not ConnectorCall.objects.exists()


def test_execution_claimed_after_the_stop_was_engaged_is_held_instead(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.33")
    assert execution.status == ExecutionStatus.QUEUED
    # The stop engaged between the approval's look at it and its commit: the engage's hold
    # did not see this execution, so the claim is what holds it.
    EmergencyStop.objects.update_or_create(id=1, defaults={"engaged": True})

    assert tasks.run_execution(str(execution.id)) is None

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.HELD
    assert execution.attempts == 0
    held = AuditEvent.objects.get(event_type="execution.held")
    assert held.data["why"] == "emergency stop"
    assert not ConnectorCall.objects.exists()


def test_suspended_agents_executions_are_held(
    responder: factories.AgentWithKey, analyst: User, manager: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.32")
    services.agent_suspend(agent=responder.agent, by=manager, reason="rogue")
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.HELD
    assert tasks.run_execution(str(execution.id)) is None
    assert Agent.objects.get(pk=responder.agent.pk).suspended
    assert not ConnectorCall.objects.exists()


def _expire_lease(execution: Execution) -> None:
    # Stands in for the lease running out while its worker is gone.
    Execution.objects.filter(pk=execution.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )


def test_sweeper_requeues_an_execution_whose_lease_expired(
    responder: factories.AgentWithKey, analyst: User, django_capture_on_commit_callbacks: Any
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.40")
    claim = services.execution_claim(execution_id=execution.id)
    assert claim is not None and claim.attempt == 1
    assert services.sweep().requeued == 0  # the lease still holds

    _expire_lease(execution)
    with django_capture_on_commit_callbacks(execute=True):
        report = services.sweep()

    assert report.requeued == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED
    assert execution.lease_until is None
    requeued = AuditEvent.objects.get(event_type="execution.requeued")
    assert requeued.data["execution"] == str(execution.id)
    dispatched = [m["args"] for m in broker_messages() if m["task"].endswith("run_execution")]
    assert dispatched == [[str(execution.id)]]


def test_proposal_page_says_when_a_running_execution_would_be_retried(
    responder: factories.AgentWithKey, analyst: User, client: Any
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.42")
    claim = services.execution_claim(execution_id=execution.id)
    assert claim is not None
    execution.refresh_from_db()
    client.force_login(analyst)
    page = client.get(f"/proposals/{execution.proposal_id}/").content.decode()
    assert "Running" in page
    lease = timezone.localtime(execution.lease_until).strftime("%H:%M:%S")
    assert f"Should its worker be lost, the next attempt starts after {lease}." in page


def test_claim_that_saw_the_stop_row_appear_mid_claim_starts_over_and_runs(
    responder: factories.AgentWithKey, analyst: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.43")
    EmergencyStop.objects.update_or_create(id=1, defaults={"engaged": False})

    class CommittedJustAfterTheLockingRead(str):
        """The claim's locking read misses the row; its UPDATE, a moment later, sees it."""

        missed = 0

        def __add__(self, other: str) -> str:
            if type(self).missed == 0:
                type(self).missed = 1
                return "SELECT engaged FROM agents_emergencystop WHERE id = -1" + other
            return str.__add__(self, other)

    monkeypatch.setattr(sql.claims, "STOP_ROW", CommittedJustAfterTheLockingRead(sql.STOP_ROW))
    claim = services.execution_claim(execution_id=execution.id)

    assert CommittedJustAfterTheLockingRead.missed == 1
    assert claim is not None and claim.attempt == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING and execution.attempts == 1
    assert AuditEvent.objects.filter(event_type="execution.started").count() == 1


def test_sweeper_redispatches_a_queued_execution_whose_task_was_lost(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.41")
    # Its on-commit enqueue never happened (not captured here): the task is lost.
    assert broker_messages() == []
    assert services.sweep().redispatched == 0  # not stale yet

    Execution.objects.filter(pk=execution.pk).update(
        queued_at=timezone.now() - timedelta(seconds=settings.EXECUTION_QUEUED_STALE_SECONDS + 1)
    )
    assert services.sweep().redispatched == 1

    dispatched = [m["args"] for m in broker_messages() if m["task"].endswith("run_execution")]
    assert dispatched == [[str(execution.id)]]
    # The bumped queued_at keeps the next sweep from flooding a busy queue with duplicates.
    assert services.sweep().redispatched == 0


def test_stale_worker_is_fenced_out_by_the_attempt_number(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="reset_password", target="stale@corp.example")
    stale = services.execution_claim(execution_id=execution.id)
    assert stale is not None
    _expire_lease(execution)
    services.sweep()
    fresh = services.execution_claim(execution_id=execution.id)
    assert fresh is not None and fresh.attempt == 2

    # The stale worker wakes up and finishes its call: the same key, so no second effect...
    result = connectors.perform(
        action="reset_password",
        target="stale@corp.example",
        params={},
        idempotency_key=execution.idempotency_key,
    )
    # ...and its settle is refused because attempt 2 owns the execution now.
    assert services.execution_settle(claim=stale, outcome="succeeded", result=result) is None
    assert services.execution_settle(claim=stale, outcome="permanent", error="late") is None
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING
    assert execution.attempts == 2

    replay = connectors.perform(
        action="reset_password",
        target="stale@corp.example",
        params={},
        idempotency_key=execution.idempotency_key,
    )
    settled = services.execution_settle(claim=fresh, outcome="succeeded", result=replay)
    assert settled is not None and settled.status == ExecutionStatus.SUCCEEDED
    assert ConnectorCall.objects.count() == 1
    assert connectors.state_of("identity", "stale@corp.example") == {"password_resets": 1}
    assert events(execution).count("execution.succeeded") == 1
    assert "execution.failed" not in events(execution)


def test_rollback_restores_the_earlier_state_and_is_audited(
    responder: factories.AgentWithKey, analyst: User, analyst2: User
) -> None:
    execution = approved(responder, analyst, action="disable_user", target="mallory@corp.example")
    tasks.run_execution(str(execution.id))
    assert connectors.state_of("identity", "mallory@corp.example") == {"enabled": False}

    services.rollback_request(execution_id=execution.id, analyst=analyst2, reason="false positive")
    assert tasks.run_rollback(str(execution.id)) == "rolled_back"

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.ROLLED_BACK
    assert execution.rollback_attempts == 1
    assert execution.result["rollback"]["operation"] == "disable_user:enable"
    assert connectors.state_of("identity", "mallory@corp.example") == {}
    assert events(execution) == [
        "execution.started",
        "execution.succeeded",
        "execution.rollback_requested",
        "execution.rollback_started",
        "execution.rollback_succeeded",
    ]
    requested = AuditEvent.objects.get(event_type="execution.rollback_requested")
    assert requested.actor == analyst2.username
    assert requested.data["reason"] == "false positive"
    # A second rollback message finds nothing to do.
    assert tasks.run_rollback(str(execution.id)) is None
    assert ConnectorCall.objects.filter(idempotency_key__endswith=":undo").count() == 1


def test_irreversible_action_cannot_be_rolled_back(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="kill_process", target="ws-9.corp.example")
    tasks.run_execution(str(execution.id))
    with pytest.raises(WrongState):
        services.rollback_request(
            execution_id=execution.id, analyst=analyst, reason="false positive"
        )
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED


def test_only_a_succeeded_execution_can_be_rolled_back(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.50")
    with pytest.raises(WrongState):
        services.rollback_request(
            execution_id=execution.id, analyst=analyst, reason="false positive"
        )


def test_execution_whose_workers_keep_dying_fails_after_the_attempt_limit(
    responder: factories.AgentWithKey,
    analyst: User,
    senior: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 2
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.42")
    for _ in range(2):
        assert services.execution_claim(execution_id=execution.id) is not None
        _expire_lease(execution)  # the worker died mid-call, again
        with django_capture_on_commit_callbacks(execute=True):
            services.sweep()

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert execution.attempts == 2
    assert "gave up after 2 attempts" in execution.error
    assert events(execution) == [
        "execution.started",
        "execution.requeued",
        "execution.started",
        "execution.failed",
    ]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [senior.email]


def test_rollback_whose_workers_keep_dying_ends_rollback_failed(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 1
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.43")
    tasks.run_execution(str(execution.id))
    services.rollback_request(execution_id=execution.id, analyst=analyst, reason="false positive")
    assert services.execution_claim(execution_id=execution.id, rollback=True) is not None
    _expire_lease(execution)  # the worker died during the undo

    assert tasks.run_rollback(str(execution.id)) is None

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.ROLLBACK_FAILED
    assert "gave up after 1 attempts" in execution.error
    assert connectors.state_of("firewall", "203.0.113.43") == {"blocked": True}


def test_claim_takes_the_execution_with_its_proposal_and_a_lease(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.33")
    before = timezone.now()

    claim = services.execution_claim(execution_id=execution.id)

    assert claim is not None and claim.attempt == 1
    stored = Execution.objects.get(pk=execution.pk)
    for field in Execution._meta.concrete_fields:
        assert getattr(claim.execution, field.attname) == getattr(stored, field.attname)
    assert stored.status == ExecutionStatus.RUNNING
    assert stored.started_at >= before
    assert stored.lease_until == stored.started_at + timedelta(
        seconds=settings.EXECUTION_LEASE_SECONDS
    )
    assert claim.execution.proposal.target == "203.0.113.33"
    assert claim.execution.proposal.params == execution.proposal.params
    started = AuditEvent.objects.get(event_type="execution.started")
    assert started.data == {"execution": str(execution.id), "status": "running", "attempt": 1}
    # A second claim of the same execution (a duplicate message) gets nothing.
    assert services.execution_claim(execution_id=execution.id) is None


def test_claim_holds_the_execution_of_an_agent_suspended_since_it_was_queued(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.34")
    # The flag alone, as when a suspension commits while this execution's task is on its way.
    Agent.objects.filter(pk=responder.agent.pk).update(suspended=True)

    assert services.execution_claim(execution_id=execution.id) is None

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.HELD
    assert execution.attempts == 0
    assert AuditEvent.objects.get(event_type="execution.held").data["why"] == "agent suspended"


def test_claim_leaves_an_execution_whose_backoff_is_not_over(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.35")
    Execution.objects.filter(pk=execution.pk).update(
        not_before=timezone.now() + timedelta(seconds=30)
    )

    assert services.execution_claim(execution_id=execution.id) is None

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED
    assert not AuditEvent.objects.filter(event_type__startswith="execution.").exists()


def test_the_first_claim_on_a_fresh_database_creates_the_stop_row_and_runs(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.36")
    EmergencyStop.objects.all().delete()  # as on a database no stop was ever pulled on

    claim = services.execution_claim(execution_id=execution.id)

    assert claim is not None and claim.attempt == 1
    assert EmergencyStop.objects.get(id=1).engaged is False
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING
