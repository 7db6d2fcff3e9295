"""Failed executions: retry (one new attempt of the same execution) and acknowledge."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from approvals import connectors, live, selectors, services, tasks
from approvals.models import ConnectorCall, Execution, ExecutionStatus
from audit.models import AuditEvent
from soc_console.errors import NotPermitted, WrongState
from tests import factories
from tests.execution.conftest import approved, broker_messages

pytestmark = pytest.mark.django_db


def events(execution: Execution) -> list[str]:
    return list(
        AuditEvent.objects.filter(
            proposal_id=execution.proposal_id, event_type__startswith="execution."
        )
        .order_by("seq")
        .values_list("event_type", flat=True)
    )


@pytest.fixture
def gave_up(responder: factories.AgentWithKey, analyst: User, settings: Any) -> Execution:
    """An isolation whose EDR timed out on both allowed attempts: failed. The EDR answers the
    next call (a flaky- target fails twice per idempotency key, then succeeds)."""
    settings.EXECUTION_BACKOFF_BASE_SECONDS = 0
    settings.EXECUTION_MAX_ATTEMPTS = 2
    execution = approved(
        responder, analyst, action="isolate_host", target="flaky-ws-9.corp.example"
    )
    assert [tasks.run_execution(str(execution.id)) for _ in range(2)] == ["queued", "failed"]
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    return execution


def test_retry_queues_one_new_attempt_that_runs_once(
    gave_up: Execution, analyst2: User, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        retried = services.execution_retry(execution_id=gave_up.id, analyst=analyst2)

    assert retried.status == ExecutionStatus.QUEUED
    # Exactly one task message on the real broker, for this execution.
    assert broker_messages() == [
        {"task": "approvals.tasks.run_execution", "args": [str(gave_up.id)]}
    ]
    event = AuditEvent.objects.get(event_type="execution.retried")
    assert event.actor == "bob"
    assert event.data["after_attempt"] == 2
    assert "gave up after 2 attempts" in event.data["previous_error"]

    # The worker runs the message; a duplicate delivery of it finds nothing to claim.
    assert tasks.run_execution(str(gave_up.id)) == "succeeded"
    assert tasks.run_execution(str(gave_up.id)) is None

    gave_up.refresh_from_db()
    assert gave_up.attempts == 3  # one new attempt, the same execution
    assert gave_up.status == ExecutionStatus.SUCCEEDED
    assert connectors.state_of("edr", "flaky-ws-9.corp.example") == {"isolated": True}
    assert ConnectorCall.objects.filter(idempotency_key=gave_up.idempotency_key).count() == 1
    assert events(gave_up)[-3:] == [
        "execution.retried",
        "execution.started",
        "execution.succeeded",
    ]


def test_a_retry_whose_attempt_fails_again_fails_without_a_new_backoff_cycle(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    execution = approved(responder, analyst, action="isolate_host", target="broken-fs1.corp")
    assert tasks.run_execution(str(execution.id)) == "failed"
    services.execution_acknowledge(execution_id=execution.id, analyst=analyst)

    services.execution_retry(execution_id=execution.id, analyst=analyst)
    assert tasks.run_execution(str(execution.id)) == "failed"

    execution.refresh_from_db()
    assert execution.attempts == 2
    # A retry clears the acknowledgement: failing again, it needs attention again.
    assert execution.acknowledged_at is None
    assert selectors.queue_counters().failed == 1


def test_retry_of_an_action_that_did_take_effect_does_not_repeat_it(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    # The worker reached the connector and died before recording it, on every attempt: the
    # sweeper gives up. The kill did happen once, and a retry must not kill again.
    settings.EXECUTION_MAX_ATTEMPTS = 1
    execution = approved(
        responder, analyst, action="kill_process", target="ws-7.corp.example", params={"pid": 1}
    )
    claim = services.execution_claim(execution_id=execution.id)
    assert claim is not None
    connectors.perform(
        action="kill_process",
        target="ws-7.corp.example",
        params={"pid": 1},
        idempotency_key=execution.idempotency_key,
    )
    before = connectors.state_of("edr", "ws-7.corp.example")
    Execution.objects.filter(pk=execution.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    services.sweep()
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED

    services.execution_retry(execution_id=execution.id, analyst=analyst)
    assert tasks.run_execution(str(execution.id)) == "succeeded"

    execution.refresh_from_db()
    assert execution.result["replayed"] is True
    assert connectors.state_of("edr", "ws-7.corp.example") == before
    assert ConnectorCall.objects.count() == 1


def test_only_a_failed_execution_can_be_retried(
    responder: factories.AgentWithKey, analyst: User
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.77")
    with pytest.raises(WrongState, match="queued, not failed"):
        services.execution_retry(execution_id=execution.id, analyst=analyst)
    assert not AuditEvent.objects.filter(event_type="execution.retried").exists()


def test_retry_is_refused_while_the_emergency_stop_is_engaged(
    gave_up: Execution, analyst: User, manager: User
) -> None:
    services.emergency_stop_engage(by=manager, reason="incident bridge: hold everything")
    with pytest.raises(WrongState, match="emergency stop"):
        services.execution_retry(execution_id=gave_up.id, analyst=analyst)
    gave_up.refresh_from_db()
    assert gave_up.status == ExecutionStatus.FAILED


@pytest.mark.parametrize("role", ["manager", "nobody"])
def test_only_analysts_and_above_retry_or_acknowledge(gave_up: Execution, role: str) -> None:
    user = factories.user("maya", factories.MANAGER) if role == "manager" else factories.user("x")
    with pytest.raises(NotPermitted):
        services.execution_retry(execution_id=gave_up.id, analyst=user)
    with pytest.raises(NotPermitted):
        services.execution_acknowledge(execution_id=gave_up.id, analyst=user)
    gave_up.refresh_from_db()
    assert gave_up.status == ExecutionStatus.FAILED and gave_up.acknowledged_at is None


def test_acknowledging_keeps_it_failed_and_takes_it_off_the_counter(
    gave_up: Execution, analyst: User, analyst2: User
) -> None:
    assert selectors.queue_counters().failed == 1

    services.execution_acknowledge(execution_id=gave_up.id, analyst=analyst, note="EDR outage")

    gave_up.refresh_from_db()
    assert gave_up.status == ExecutionStatus.FAILED
    assert gave_up.acknowledged_by == analyst
    assert selectors.queue_counters().failed == 0
    assert list(selectors.failed_executions()) == []
    assert list(selectors.failed_executions(acknowledged=True)) == [gave_up]
    event = AuditEvent.objects.get(event_type="execution.acknowledged")
    assert event.actor == "alice" and event.data["note"] == "EDR outage"
    with pytest.raises(WrongState, match="Already acknowledged by alice"):
        services.execution_acknowledge(execution_id=gave_up.id, analyst=analyst2)
    assert AuditEvent.objects.filter(event_type="execution.acknowledged").count() == 1


def test_a_failed_rollback_can_be_acknowledged_not_retried(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 1
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.43")
    tasks.run_execution(str(execution.id))
    services.rollback_request(execution_id=execution.id, analyst=analyst, reason="false positive")
    assert services.execution_claim(execution_id=execution.id, rollback=True) is not None
    Execution.objects.filter(pk=execution.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    tasks.run_rollback(str(execution.id))
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.ROLLBACK_FAILED

    with pytest.raises(WrongState, match="acknowledge it instead"):
        services.execution_retry(execution_id=execution.id, analyst=analyst)
    services.execution_acknowledge(execution_id=execution.id, analyst=analyst)
    assert selectors.queue_counters().failed == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_analysts_retrying_at_once_start_one_attempt(settings: Any) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 1
    owner = factories.agent("racer", grants={"isolate_host": 2})
    alice = factories.user("alice", factories.ANALYST)
    bob = factories.user("bob", factories.ANALYST)
    execution = approved(owner, alice, action="isolate_host", target="broken-ws-1.corp")
    assert tasks.run_execution(str(execution.id)) == "failed"
    live.wait_idle()

    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def retry(index: int, who: User) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = services.execution_retry(execution_id=execution.id, analyst=who)
        except Exception as exc:  # the refused one, kept for the assertions
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=retry, args=(i, u)) for i, u in enumerate((alice, bob))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    live.wait_idle()

    won = [r for r in results if isinstance(r, Execution)]
    lost = [r for r in results if isinstance(r, WrongState)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "not failed" in lost[0].detail
    assert AuditEvent.objects.filter(event_type="execution.retried").count() == 1
    # One attempt starts: the first run claims it, a second finds nothing queued.
    assert tasks.run_execution(str(execution.id)) == "failed"
    assert tasks.run_execution(str(execution.id)) is None
    execution.refresh_from_db()
    assert execution.attempts == 2
    assert events(execution).count("execution.started") == 2
