"""The console count's reporting task (approvals/presence.py) on its event loop."""

from __future__ import annotations

import asyncio

import pytest

from approvals import presence


def _stops_when_cancelled(ticks: int) -> bool:
    """Open a console, close it and cancel the reporting task `ticks` loop steps after the
    close (a server shutting down as its last console leaves): does the task end?"""

    async def scenario() -> bool:
        reporting = presence._Presence()
        reporting.opened()
        task = reporting._task
        assert task is not None
        for _ in range(50):  # until the first count is written and it waits for a change
            await asyncio.sleep(0.01)
        reporting.closed()
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:
            task.cancel()  # give up on it; the loop closing below must not wait on it
        return bool(done)

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(scenario())
    finally:
        loop.close()


@pytest.mark.parametrize("ticks", range(6))
def test_the_reporting_task_ends_when_cancelled_as_the_count_changes(ticks: int) -> None:
    # Whichever step the cancellation lands on, the task ends: a loop shutting down waits for it.
    assert _stops_when_cancelled(ticks)
