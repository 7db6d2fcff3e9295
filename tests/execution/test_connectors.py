"""The simulated outside systems: idempotent by key, reversible, and able to fail."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from approvals import connectors
from approvals.models import ConnectorCall, ConnectorState

pytestmark = pytest.mark.django_db


def test_same_idempotency_key_twice_has_one_effect_and_returns_the_first_result() -> None:
    first = connectors.perform(
        action="reset_password", target="jdoe@corp.example", params={}, idempotency_key="k-1"
    )
    second = connectors.perform(
        action="reset_password", target="jdoe@corp.example", params={}, idempotency_key="k-1"
    )
    assert ConnectorCall.objects.filter(idempotency_key="k-1").count() == 1
    assert connectors.state_of("identity", "jdoe@corp.example") == {"password_resets": 1}
    assert second == {**first, "replayed": True}
    assert first["before"] == {} and first["after"] == {"password_resets": 1}


def test_different_keys_each_take_effect() -> None:
    for key in ("k-1", "k-2"):
        connectors.perform(
            action="reset_password", target="jdoe@corp.example", params={}, idempotency_key=key
        )
    assert ConnectorCall.objects.count() == 2
    assert connectors.state_of("identity", "jdoe@corp.example") == {"password_resets": 2}


def test_rollback_restores_the_state_from_before_the_action() -> None:
    connectors.perform(
        action="kill_process", target="ws-7.corp.example", params={"pid": 11}, idempotency_key="a"
    )
    connectors.perform(
        action="isolate_host", target="ws-7.corp.example", params={}, idempotency_key="b"
    )
    assert connectors.state_of("edr", "ws-7.corp.example") == {"killed": [11], "isolated": True}

    undone = connectors.undo(
        action="isolate_host",
        target="ws-7.corp.example",
        idempotency_key="b:undo",
        original_key="b",
    )
    # Back to what the EDR held before the isolation: the earlier kill stays on record.
    assert connectors.state_of("edr", "ws-7.corp.example") == {"killed": [11]}
    assert undone["operation"] == "isolate_host:release"
    assert ConnectorCall.objects.filter(idempotency_key="b:undo").exists()


def test_undo_of_an_irreversible_action_is_refused() -> None:
    connectors.perform(
        action="reset_password", target="jdoe@corp.example", params={}, idempotency_key="r"
    )
    with pytest.raises(connectors.PermanentError):
        connectors.undo(
            action="reset_password",
            target="jdoe@corp.example",
            idempotency_key="r:undo",
            original_key="r",
        )
    assert connectors.state_of("identity", "jdoe@corp.example") == {"password_resets": 1}


def test_flaky_target_fails_twice_then_succeeds_for_the_same_key() -> None:
    outcomes = []
    for _ in range(3):
        try:
            connectors.perform(
                action="block_ip", target="198.51.100.9", params={}, idempotency_key="f"
            )
            outcomes.append("ok")
        except connectors.TransientError:
            outcomes.append("transient")
    assert outcomes == ["transient", "transient", "ok"]
    assert connectors.state_of("firewall", "198.51.100.9") == {"blocked": True}
    assert ConnectorCall.objects.filter(idempotency_key="f").count() == 1


def test_broken_target_fails_permanently_and_changes_nothing() -> None:
    for _ in range(2):
        with pytest.raises(connectors.PermanentError):
            connectors.perform(
                action="isolate_host",
                target="broken-db01.corp.example",
                params={},
                idempotency_key="p",
            )
    assert connectors.state_of("edr", "broken-db01.corp.example") == {}
    assert not ConnectorCall.objects.exists()


def test_failure_mode_can_be_set_for_every_target(settings: Any) -> None:
    settings.CONNECTOR_FAILURE = "permanent"
    with pytest.raises(connectors.PermanentError):
        connectors.perform(action="block_ip", target="203.0.113.5", params={}, idempotency_key="x")


def test_slow_target_takes_its_time_on_the_first_call_not_on_a_replay(settings: Any) -> None:
    import time

    settings.CONNECTOR_SLOW_MS = 300
    started = time.monotonic()
    connectors.perform(
        action="isolate_host", target="slow-ws01.corp.example", params={}, idempotency_key="s-1"
    )
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    connectors.perform(
        action="isolate_host", target="ws02.corp.example", params={}, idempotency_key="s-2"
    )
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    replay = connectors.perform(
        action="isolate_host", target="slow-ws01.corp.example", params={}, idempotency_key="s-1"
    )
    assert time.monotonic() - started < 0.3 and replay["replayed"] is True


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_with_one_key_have_one_effect() -> None:
    # A stale worker and its replacement calling at the same moment: the ledger's unique key
    # decides, and the loser's state change is rolled back with its ledger insert.
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def call() -> None:
        try:
            start.wait()
            results.append(
                connectors.perform(
                    action="reset_password",
                    target="race@corp.example",
                    params={},
                    idempotency_key="same-key",
                )
            )
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 8
    assert ConnectorCall.objects.filter(idempotency_key="same-key").count() == 1
    assert ConnectorState.objects.get(connector="identity", target="race@corp.example").state == {
        "password_resets": 1
    }
    assert {r["after"]["password_resets"] for r in results} == {1}
