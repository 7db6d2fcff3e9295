"""An approval's undo window: nothing runs before it ends, and an undo within it stops the action.

These tests open the window themselves (the suite's default is APPROVAL_UNDO_SECONDS=0), with
real clocks: the claim compares the execution's not_before with the time it runs.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from agents.models import Criticality
from approvals import callbacks, connectors, live, services, tasks
from approvals.models import ConnectorCall, Decision, Execution, ExecutionStatus, Proposal
from audit.models import AuditEvent
from soc_console.errors import NotPermitted, WrongState
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def window(settings: Any) -> float:
    settings.APPROVAL_UNDO_SECONDS = 5
    return 5.0


def _sent(task: str) -> list[dict[str, Any]]:
    """Messages for `task` waiting in the test broker's queues (the executions' and the
    callbacks'): args and eta (None if none)."""
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    found = []
    waiting = [
        raw
        for queue in (django_settings.CELERY_TASK_DEFAULT_QUEUE, django_settings.CALLBACK_QUEUE)
        for raw in reversed(client.lrange(queue, 0, -1))
    ]
    for raw in waiting:
        envelope = json.loads(raw)
        if envelope["headers"]["task"] != task:
            continue
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        eta = envelope["headers"].get("eta")
        found.append({"args": args, "eta": datetime.fromisoformat(eta) if eta else None})
    return found


def _pending(owner: factories.AgentWithKey, target: str, **extra: Any) -> Proposal:
    proposal = factories.proposal(owner, action="disable_user", target=target, **extra)
    assert proposal.status == "pending"
    return proposal


def test_approval_is_sent_to_run_when_its_window_ends_and_not_before(
    responder: factories.AgentWithKey,
    analyst: User,
    window: float,
    django_capture_on_commit_callbacks: Any,
) -> None:
    proposal = _pending(responder, "ann@corp.example")
    with django_capture_on_commit_callbacks(execute=True):
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    decided = AuditEvent.objects.get(proposal_id=proposal.id, event_type="proposal.approved")
    assert execution.status == ExecutionStatus.QUEUED and execution.attempts == 0
    assert execution.not_before == execution.created_at + timedelta(seconds=window)
    assert datetime.fromisoformat(decided.data["undo_until"]) == execution.not_before
    [message] = _sent("approvals.tasks.run_execution")
    assert message["args"] == [str(execution.id)]
    # Due the moment the window ends.
    assert message["eta"] == execution.not_before

    # A message that arrives early (here: the worker runs it at once) claims nothing...
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.run_execution(str(execution.id)) is None
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED and execution.attempts == 0
    assert not ConnectorCall.objects.exists()
    assert not AuditEvent.objects.filter(event_type="execution.started").exists()
    # ...and is sent again for when the window ends, instead of waiting for the sweeper.
    again = _sent("approvals.tasks.run_execution")
    assert len(again) == 2 and again[1]["args"] == [str(execution.id)]
    assert again[1]["eta"] == execution.not_before


def test_after_a_real_window_the_action_runs(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    settings.APPROVAL_UNDO_SECONDS = 0.6
    proposal = _pending(responder, "bea@corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)

    assert tasks.run_execution(str(execution.id)) is None  # within the window
    assert connectors.state_of("identity", "bea@corp.example") == {}
    time.sleep(max((execution.not_before - timezone.now()).total_seconds(), 0) + 0.05)

    assert tasks.run_execution(str(execution.id)) == "succeeded"
    call = ConnectorCall.objects.get(idempotency_key=execution.idempotency_key)
    assert call.at >= execution.not_before
    assert connectors.state_of("identity", "bea@corp.example") == {"enabled": False}


def test_sweeper_leaves_an_approval_in_its_window_and_recovers_it_after(
    responder: factories.AgentWithKey, analyst: User, window: float, settings: Any
) -> None:
    settings.EXECUTION_QUEUED_STALE_SECONDS = 1
    proposal = _pending(responder, "cal@corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    # Queued long enough to look lost, but its window is still open.
    Execution.objects.filter(pk=execution.pk).update(
        queued_at=timezone.now() - timedelta(seconds=10)
    )
    assert services.sweep().redispatched == 0
    assert _sent("approvals.tasks.run_execution") == []

    # The window ended a while ago and no worker took it (its message was lost).
    Execution.objects.filter(pk=execution.pk).update(
        not_before=timezone.now() - timedelta(seconds=2)
    )
    assert services.sweep().redispatched == 1
    assert [m["args"] for m in _sent("approvals.tasks.run_execution")] == [[str(execution.id)]]


def test_undo_within_the_window_puts_the_proposal_back_and_is_audited(
    responder: factories.AgentWithKey,
    analyst: User,
    window: float,
    django_capture_on_commit_callbacks: Any,
) -> None:
    proposal = _pending(responder, "dan@corp.example")
    services.proposal_approve(
        proposal_id=proposal.id, analyst=analyst, reason="looks right", seconds_on_card="4.2"
    )
    first = Execution.objects.get(proposal=proposal)

    undone = services.approval_undo(proposal_id=proposal.id, analyst=analyst)

    assert undone.status == "pending" and undone.approvals == 0 and undone.decided_at is None
    proposal.refresh_from_db()
    assert proposal.status == "pending" and proposal.approvals == 0
    assert not Decision.objects.filter(proposal=proposal).exists()
    assert not Execution.objects.filter(proposal=proposal).exists()
    event = AuditEvent.objects.get(proposal_id=proposal.id, event_type="proposal.approval_undone")
    assert event.actor == "alice"
    assert event.data["execution"] == str(first.id)
    assert event.data["approval"]["reason"] == "looks right"
    assert event.data["approval"]["seconds_on_card"] == 4.2
    assert 0 < event.data["seconds_left"] <= window
    assert event.data["approvals"] == 0

    # The task the approval sent still arrives: it finds nothing to run.
    assert tasks.run_execution(str(first.id)) is None
    assert not ConnectorCall.objects.exists()

    # The analyst may decide again: a new decision, a new execution with a new key.
    with django_capture_on_commit_callbacks(execute=True):
        again = services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    assert again.status == "approved"
    second = Execution.objects.get(proposal=proposal)
    assert second.pk != first.pk and second.idempotency_key != first.idempotency_key
    assert Decision.objects.filter(proposal=proposal, analyst=analyst).count() == 1
    assert list(
        AuditEvent.objects.filter(proposal_id=proposal.id)
        .order_by("seq")
        .values_list("event_type", flat=True)
    ) == [
        "proposal.submitted",
        "proposal.approved",
        "proposal.approval_undone",
        "proposal.approved",
    ]


def test_undo_after_the_window_is_refused_and_changes_nothing(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    settings.APPROVAL_UNDO_SECONDS = 0.3
    proposal = _pending(responder, "eve@corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    time.sleep(0.35)

    with pytest.raises(WrongState) as refused:
        services.approval_undo(proposal_id=proposal.id, analyst=analyst)

    assert refused.value.code == "undo_window_over"
    assert "Too late to undo" in refused.value.detail
    proposal.refresh_from_db()
    assert proposal.status == "approved"
    assert Decision.objects.filter(proposal=proposal).count() == 1
    assert Execution.objects.get(proposal=proposal).status == "queued"
    assert not AuditEvent.objects.filter(event_type="proposal.approval_undone").exists()


def test_undo_of_an_execution_that_started_is_refused(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    settings.APPROVAL_UNDO_SECONDS = 0.2
    proposal = _pending(responder, "fay@corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    time.sleep(0.25)
    claim = services.execution_claim(execution_id=Execution.objects.get(proposal=proposal).pk)
    assert claim is not None
    # Even a window moved forward again (a clock stepping back) does not reopen the undo: the
    # execution has started.
    Execution.objects.filter(proposal=proposal).update(
        not_before=timezone.now() + timedelta(seconds=5)
    )
    with pytest.raises(WrongState):
        services.approval_undo(proposal_id=proposal.id, analyst=analyst)
    assert Proposal.objects.get(pk=proposal.pk).status == "approved"


def test_only_the_analyst_whose_approval_let_it_run_may_undo_it(
    responder: factories.AgentWithKey,
    analyst: User,
    analyst2: User,
    manager: User,
    window: float,
) -> None:
    proposal = _pending(responder, "gil@corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)

    with pytest.raises(NotPermitted) as refused:
        services.approval_undo(proposal_id=proposal.id, analyst=analyst2)
    assert refused.value.detail == "Only alice, whose approval let it run, can undo it."
    with pytest.raises(NotPermitted):
        services.approval_undo(proposal_id=proposal.id, analyst=manager)  # decides nothing

    proposal.refresh_from_db()
    assert proposal.status == "approved"
    assert Execution.objects.filter(proposal=proposal).exists()


def test_two_person_rule_holds_across_an_undo(
    responder: factories.AgentWithKey,
    analyst: User,
    analyst2: User,
    senior: User,
    window: float,
) -> None:
    factories.asset("ops-admin", kind="user", criticality=Criticality.CRITICAL)
    proposal = _pending(responder, "ops-admin")
    assert proposal.required_approvals == 2

    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    # A first approval sends nothing anywhere: there is nothing to undo.
    assert not Execution.objects.filter(proposal=proposal).exists()
    with pytest.raises(WrongState):
        services.approval_undo(proposal_id=proposal.id, analyst=analyst)

    services.proposal_approve(proposal_id=proposal.id, analyst=senior)
    with pytest.raises(NotPermitted):  # alice's approval did not let it run: sam's did
        services.approval_undo(proposal_id=proposal.id, analyst=analyst)
    services.approval_undo(proposal_id=proposal.id, analyst=senior)

    proposal.refresh_from_db()
    assert proposal.status == "pending" and proposal.approvals == 1
    assert [d.analyst.username for d in proposal.decisions.all()] == ["alice"]
    # The rule is unchanged: the final approval still needs a senior, and not alice again.
    with pytest.raises(NotPermitted) as refused:
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst2)
    assert refused.value.code == "senior_required"
    with pytest.raises(NotPermitted):
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    services.proposal_approve(proposal_id=proposal.id, analyst=senior)
    assert Proposal.objects.get(pk=proposal.pk).status == "approved"


def test_an_automatic_approval_is_not_delayed(window: float) -> None:
    bot = factories.agent("auto-bot", grants={"block_ip": 3})
    proposal = factories.proposal(bot, action="block_ip", target="203.0.113.90", confidence=0.97)
    assert proposal.status == "auto_approved"
    assert proposal.execution.not_before is None
    assert tasks.run_execution(str(proposal.execution.id)) == "succeeded"


def test_an_approval_held_by_the_stop_can_be_undone_in_its_window(
    responder: factories.AgentWithKey, analyst: User, manager: User, window: float
) -> None:
    proposal = _pending(responder, "hal@corp.example")
    services.emergency_stop_engage(by=manager, reason="drill")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    assert Execution.objects.get(proposal=proposal).status == "held"

    services.approval_undo(proposal_id=proposal.id, analyst=analyst)

    assert Proposal.objects.get(pk=proposal.pk).status == "pending"
    assert not Execution.objects.filter(status="held").exists()


def test_the_agent_hears_of_an_approval_only_when_it_can_no_longer_be_undone(
    responder: factories.AgentWithKey,
    analyst: User,
    window: float,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from agents.models import Agent

    Agent.objects.filter(pk=responder.agent.pk).update(
        callback_url="http://127.0.0.1:9/hook", callback_secret="cb-secret"
    )
    proposal = _pending(responder, "ida@corp.example")
    with django_capture_on_commit_callbacks(execute=True):
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    [message] = _sent("approvals.tasks.deliver_callback")
    assert message["args"] == [str(proposal.id), "decided"]
    not_before = Execution.objects.get(proposal=proposal).not_before
    assert timedelta(0) <= message["eta"] - not_before < timedelta(seconds=1)

    services.approval_undo(proposal_id=proposal.id, analyst=analyst)
    # When the delayed delivery runs, the approval it was to announce is gone: nothing is
    # posted (an unreachable URL would raise DeliveryError, to be retried).
    assert callbacks.deliver(proposal_id=str(proposal.id), event="decided") is None


def test_undo_through_the_decision_api(
    responder: factories.AgentWithKey, analyst: User, analyst2: User, window: float
) -> None:
    proposal = _pending(responder, "jon@corp.example")
    alice, bob = APIClient(), APIClient()
    alice.force_login(analyst)
    bob.force_login(analyst2)
    decided = alice.post(
        f"/api/v1/proposals/{proposal.id}/decisions/", {"verdict": "approve"}, format="json"
    )
    assert decided.status_code == 201
    runs_at = decided.json()["execution"]["not_before"]
    assert datetime.fromisoformat(runs_at) > timezone.now()

    refused = bob.post(f"/api/v1/proposals/{proposal.id}/decisions/undo/")
    assert refused.status_code == 403 and refused.json()["code"] == "not_your_approval"

    undone = alice.post(f"/api/v1/proposals/{proposal.id}/decisions/undo/")
    assert undone.status_code == 200
    assert undone.json()["status"] == "pending"
    assert undone.json()["execution"] is None and undone.json()["decisions"] == []

    again = alice.post(f"/api/v1/proposals/{proposal.id}/decisions/undo/")
    assert again.status_code == 409
    assert again["Content-Type"] == "application/problem+json"
    assert Proposal.objects.get(pk=proposal.pk).status == "pending"


def _race(*workers: Any) -> list[Any]:
    """Run the callables at the same instant in threads, each with its own connection."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = workers[index]()
        except Exception as exc:  # the outcome of a refused undo, kept for the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@hypothesis_settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(offset_ms=st.integers(min_value=-60, max_value=60))
def test_an_undo_and_the_start_of_its_action_never_both_happen(
    offset_ms: int, settings: Any
) -> None:
    """Whenever the undo and the worker's claim meet around the window's end, at most one wins:
    an undone approval never reaches the connector, and an action that ran was never undone."""
    settings.APPROVAL_UNDO_SECONDS = 0.25
    suffix = f"{offset_ms + 1000}-{time.monotonic_ns()}"
    owner = factories.agent(f"race-{suffix}", grants={"disable_user": 2})
    analyst = factories.user(f"race-{suffix}", factories.ANALYST)
    proposal = _pending(owner, f"race-{suffix}@corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    meet = execution.not_before + timedelta(milliseconds=offset_ms)
    time.sleep(max((meet - timezone.now()).total_seconds(), 0))

    started, undone = _race(
        lambda: services.execution_run(execution_id=execution.id),
        lambda: services.approval_undo(proposal_id=proposal.id, analyst=analyst),
    )

    # The live updates of both sides read the database on a thread of their own: let them
    # finish, or the flush after the last example can deadlock with one of them.
    live.wait_idle()
    called = ConnectorCall.objects.filter(idempotency_key=execution.idempotency_key).exists()
    was_undone = isinstance(undone, Proposal)
    assert not (called and was_undone)
    if was_undone:
        assert not Execution.objects.filter(pk=execution.pk).exists()
        assert Proposal.objects.get(pk=proposal.pk).status == "pending"
        assert connectors.state_of("identity", proposal.target) == {}
    else:
        assert isinstance(undone, WrongState)
        assert Proposal.objects.get(pk=proposal.pk).status == "approved"
    if called:
        assert started is not None and started.status == "succeeded"


def test_the_proposal_page_says_when_an_approved_action_may_start(
    responder: factories.AgentWithKey, analyst: User, window: float, client: Any
) -> None:
    proposal = _pending(responder, "kim@corp.example")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    client.force_login(analyst)
    page = client.get(f"/proposals/{proposal.id}/").content.decode()
    start = timezone.localtime(execution.not_before).strftime("%H:%M:%S")
    assert f"It may start at {start}, when the approval's undo window ends." in page
