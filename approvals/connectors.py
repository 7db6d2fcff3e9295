"""Simulated outside systems: threat intel, ticketing, firewall, mail gateway, EDR, identity.

They stand in for real products, so they behave like them: each keeps its state (which IPs
are blocked, which hosts isolated, which users disabled) in ConnectorState, records every
call in a ledger unique on the idempotency key so that a repeated call has no second effect
and returns the first result, can be slow (CONNECTOR_LATENCY_MS) and can fail:

- CONNECTOR_FAILURE=transient: the first two calls for a key fail, the third succeeds;
  CONNECTOR_FAILURE=permanent: every call fails.
- By target: a target starting with `flaky-` (or an IP in 198.51.100.0/25) fails twice
  transiently and then succeeds; one starting with `broken-` (or in 198.51.100.128/25) fails
  permanently; one starting with `slow-` takes CONNECTOR_SLOW_MS (default 15 s) per call, long
  enough to stop a worker in the middle of it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import catalogue

from . import sql
from .models import ConnectorCall, ConnectorState

TRANSIENT_FAILURES_BEFORE_SUCCESS = 2
FLAKY_NET = ipaddress.ip_network("198.51.100.0/25")
BROKEN_NET = ipaddress.ip_network("198.51.100.128/25")


class ConnectorError(Exception):
    pass


class TransientError(ConnectorError):
    """The outside system did not answer or asked us to come back later."""


class PermanentError(ConnectorError):
    """The outside system refused the request; retrying will not help."""


def _in(net: ipaddress.IPv4Network, target: str) -> bool:
    try:
        return ipaddress.ip_network(target, strict=False).subnet_of(net)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False


def _fault_mode(target: str) -> str:
    lowered = target.lower()
    if lowered.startswith("broken-") or _in(BROKEN_NET, target):
        return "permanent"
    if lowered.startswith("flaky-") or _in(FLAKY_NET, target):
        return "transient"
    return settings.CONNECTOR_FAILURE


def _inject_faults(connector: str, target: str, idempotency_key: str) -> None:
    mode = _fault_mode(target)
    if mode == "permanent":
        raise PermanentError(f"{connector} refused the request for {target}")
    if mode == "transient":
        # Count failures per key in the simulated system itself, so the fault survives a worker
        # restart just as a real outage would.
        with transaction.atomic():
            row, _ = ConnectorState.objects.select_for_update().get_or_create(
                connector="_faults",
                target=idempotency_key,
                defaults={"state": {"failures": 0}, "updated_at": timezone.now()},
            )
            failures = int(row.state.get("failures", 0))
            if failures < TRANSIENT_FAILURES_BEFORE_SUCCESS:
                row.state = {"failures": failures + 1}
                row.updated_at = timezone.now()
                row.save(update_fields=["state", "updated_at"])
                fail = True
            else:
                fail = False
        if fail:
            raise TransientError(f"{connector} timed out (simulated outage {failures + 1})")


def _latency(target: str) -> None:
    milliseconds = settings.CONNECTOR_LATENCY_MS
    if target.lower().startswith("slow-"):
        milliseconds = max(milliseconds, settings.CONNECTOR_SLOW_MS)
    if milliseconds:
        time.sleep(milliseconds / 1000.0)


# What each action does to the target's state. Each returns the new state from the old.
def _set(**changes: Any) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {**state, **changes, **({"params": params} if params else {})}

    apply.sets_state = True  # type: ignore[attr-defined]
    return apply


def _count(name: str) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {**state, name: int(state.get(name, 0)) + 1}

    return apply


def _kill(state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    killed = list(state.get("killed", []))
    killed.append(params.get("pid") or params.get("process_name") or "unknown")
    return {**state, "killed": killed}


def _enrich(state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {**state, "lookups": int(state.get("lookups", 0)) + 1}


def _new_rules(state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {
        **state,
        "rules": params.get("rule", "deny all"),
        "policy_revision": int(state.get("policy_revision", 0)) + 1,
    }


EFFECTS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "enrich_alert": _enrich,
    "close_duplicate": _set(ticket_status="closed", duplicate=True),
    "create_ticket": _set(ticket_status="open"),
    "block_ip": _set(blocked=True),
    "quarantine_email": _set(quarantined=True),
    "kill_process": _kill,
    "isolate_host": _set(isolated=True),
    "disable_user": _set(enabled=False),
    "reset_password": _count("password_resets"),
    "revoke_sessions": _count("sessions_revoked"),
    "update_firewall_policy": _new_rules,
}


# Actions whose effect is a state the target is in (isolated, blocked, disabled…): asking for
# it again when the target is already in that state changes nothing. The others (a password
# reset, a process kill, a lookup, a firewall revision) do something new every time.
STATE_EFFECTS = frozenset(
    name for name, effect in EFFECTS.items() if getattr(effect, "sets_state", False)
)


def in_place(action: str, state: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether the action's effect is already what the target's state shows."""
    return action in STATE_EFFECTS and bool(state) and EFFECTS[action](state, params) == state


def _verdict(target: str) -> str:
    # Deterministic threat-intel answer, so demos and tests read the same every time.
    score = int(hashlib.sha256(target.encode()).hexdigest()[:2], 16)
    return "malicious" if score > 170 else "suspicious" if score > 85 else "unknown"


def _ledger_result(idempotency_key: str) -> dict[str, Any] | None:
    # Every call looks its key up first (approvals.sql says what the statement saves).
    result = sql.ledger_result(idempotency_key)
    return None if result is None else {**result, "replayed": True}


def _apply(
    *,
    connector: str,
    operation: str,
    target: str,
    idempotency_key: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    already: str | None = None,
) -> dict[str, Any]:
    """Change the simulated system and write the ledger row in one transaction.

    The callers looked the key up in the ledger already; a concurrent call with the same key
    that committed since is caught by the ledger's unique constraint below.
    """
    try:
        with transaction.atomic():
            now = timezone.now()
            row, _ = ConnectorState.objects.select_for_update().get_or_create(
                connector=connector, target=target, defaults={"state": {}, "updated_at": now}
            )
            before = dict(row.state)
            after = change(before)
            if already is not None and before and after == before:
                # Already in place (by an earlier call, or by a duplicate approved at the same
                # moment): under the row's lock, nothing is done a second time.
                return _already_result(connector, operation, target, row)
            row.state = after
            row.updated_at = now
            row.save(update_fields=["state", "updated_at"])
            result = {
                "connector": connector,
                "operation": operation,
                "target": target,
                "before": before,
                "after": after,
            }
            if operation == "enrich_alert":
                result["verdict"] = _verdict(target)
            ConnectorCall.objects.create(
                idempotency_key=idempotency_key,
                connector=connector,
                operation=operation,
                target=target,
                result=result,
                at=now,
            )
    except IntegrityError:
        # The same key ran concurrently (a stale worker and its replacement); the one that
        # committed first is the effect, and this call returns its result.
        replay = _ledger_result(idempotency_key)
        if replay is None:
            raise
        return replay
    return result


def perform(
    *, action: str, target: str, params: dict[str, Any], idempotency_key: str
) -> dict[str, Any]:
    kind = catalogue.get(action)
    if kind is None or action not in EFFECTS:
        raise PermanentError(f"no connector operation for {action}")
    replay = _ledger_result(idempotency_key)
    if replay is not None:
        return replay
    # An effect already in place (a duplicate proposal approved after the first ran) is not
    # performed a second time: _apply finds it under the target's row lock, in the statement
    # it runs anyway, and answers since when and by which call it is in place (no ledger row:
    # nothing was done). A separate look before would cost every action a query.
    _latency(target)
    _inject_faults(kind.connector, target, idempotency_key)
    effect = EFFECTS[action]
    return _apply(
        connector=kind.connector,
        operation=action,
        target=target,
        idempotency_key=idempotency_key,
        change=lambda state: effect(state, params),
        already=action if action in STATE_EFFECTS else None,
    )


def _last_call(connector: str, operation: str, target: str) -> ConnectorCall | None:
    return (
        ConnectorCall.objects.filter(connector=connector, target=target, operation=operation)
        .order_by("-at")
        .first()
    )


def _already_result(
    connector: str, operation: str, target: str, row: ConnectorState
) -> dict[str, Any]:
    last = _last_call(connector, operation, target)
    return {
        "connector": connector,
        "operation": operation,
        "target": target,
        "already_in_place": True,
        "since": (last.at if last else row.updated_at).isoformat(),
        "by_call": last.idempotency_key if last else None,
        "before": dict(row.state),
        "after": dict(row.state),
    }


def undo(*, action: str, target: str, idempotency_key: str, original_key: str) -> dict[str, Any]:
    """Restore the target's state from before the original call."""
    kind = catalogue.get(action)
    if kind is None or not kind.reversible:
        raise PermanentError(f"{action} cannot be undone")
    original = ConnectorCall.objects.filter(idempotency_key=original_key).first()
    if original is None:
        raise PermanentError("the original call is not in the connector's ledger")
    replay = _ledger_result(idempotency_key)
    if replay is not None:
        return replay
    _latency(target)
    _inject_faults(kind.connector, target, idempotency_key)
    before = dict(original.result.get("before", {}))
    after = dict(original.result.get("after", {}))
    return _apply(
        connector=kind.connector,
        operation=f"{action}:{kind.undo}",
        target=target,
        idempotency_key=idempotency_key,
        change=lambda state: restore(state, before=before, after=after),
    )


def restore(
    state: dict[str, Any], *, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """Undo one call: put back only what that call changed, and leave what later calls did.

    Rolling back an isolation must not also forget a process kill made since on the same host.
    """
    restored = dict(state)
    for key in set(before) | set(after):
        if before.get(key) == after.get(key):
            continue
        if key in before:
            restored[key] = before[key]
        else:
            restored.pop(key, None)
    return restored


def state_of(connector: str, target: str) -> dict[str, Any]:
    row = ConnectorState.objects.filter(connector=connector, target=target).first()
    return dict(row.state) if row else {}
