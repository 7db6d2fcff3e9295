"""Execution status changes reach every open console over the channel layer, in order."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User

from approvals import live, services, tasks
from approvals.models import Execution
from audit.models import AuditEvent
from tests import factories
from tests.execution.conftest import approved

# Committed rows: the live update of the start is rendered from a connection of its own.
# PostgreSQL only (the SQLite run leaves these out): committed rows read by other sessions.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


async def _run_and_listen(execution_id: str) -> list[str]:
    """Join the consoles' group, run the execution, and return the HTML pushed meanwhile.

    One event loop throughout: a pub/sub channel layer's subscription lives on its loop.
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(live.GROUP, channel)
    await sync_to_async(tasks.run_execution)(execution_id)
    messages = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=1)
        except TimeoutError:
            return messages
        messages.append(message["html"])


def _shown(pushed: list[str], execution: Execution) -> list[str]:
    """The execution statuses the proposal's state panel showed, in the order pushed."""
    return [
        status
        for html in pushed
        if f"state-{execution.proposal_id}" in html
        for status in re.findall(r"exec-(\w+)", html)
    ]


def test_start_and_result_of_a_slow_call_are_broadcast_in_order(
    responder: factories.AgentWithKey, analyst: User, settings: Any
) -> None:
    settings.CONNECTOR_LATENCY_MS = 300
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.70")
    assert live.wait_idle()  # the approval's own update is out before we listen
    pushed = async_to_sync(_run_and_listen)(str(execution.id))

    assert _shown(pushed, execution) == ["running", "succeeded"]


def test_a_call_quicker_than_the_running_frame_goes_straight_to_its_result(
    responder: factories.AgentWithKey, analyst: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A generous bound, so that a loaded machine cannot make the call look slow.
    monkeypatch.setattr(services.executions, "ANNOUNCE_RUNNING_AFTER_SECONDS", 5.0)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.71")
    assert live.wait_idle()
    pushed = async_to_sync(_run_and_listen)(str(execution.id))

    assert _shown(pushed, execution) == ["succeeded"]
    assert AuditEvent.objects.filter(event_type="execution.started").count() == 1
