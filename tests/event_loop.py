"""A websocket scenario's event loop, for tests that drive the console's consumers."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections


def run_scenario(scenario: Callable[[], Any], timeout: float = 60.0) -> None:
    """Run the scenario's event loop in a thread of its own: whatever else the session has
    on the main thread (a browser driver's loop), the consumers get a clean one. A scenario
    that does not finish fails the test with what its loop was still waiting on, instead of
    holding the whole run (the thread is a daemon, left behind)."""
    outcome: list[BaseException | None] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def watched() -> None:
        loops.append(asyncio.get_running_loop())
        await scenario()

    def in_thread() -> None:
        try:
            async_to_sync(watched)()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(error)
        finally:
            connections.close_all()  # the ORM work of sync_to_async ran on this thread

    thread = threading.Thread(target=in_thread, name="live-scenario", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        stacks = io.StringIO()
        for task in asyncio.all_tasks(loops[0]) if loops else ():
            task.print_stack(file=stacks)
        pytest.fail(
            f"the scenario did not finish in {timeout:.0f} s; its tasks:\n{stacks.getvalue()}"
        )
    if outcome[0] is not None:
        raise outcome[0]
