"""An approved proposal's generated execution: started and finished with a worker's timings,
failed at the agent's rate, and rolled back now and then when the action was a mistake."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from .rows import Generated

SYSTEM = "system"


def execution(
    out: Generated,
    rng: random.Random,
    *,
    pid: Any,
    eid: uuid.UUID,
    reversible: bool,
    at: datetime,
    good: bool,
    failure_rate: float,
    compact: bool,
    until: datetime | None = None,
) -> None:
    """The execution `eid` of the proposal `pid`, approved at `at`. `good`: the proposal was
    right to make; a wrong one that ran and can be undone is often rolled back, but not after
    `until`, the end of the history. `compact` leaves out the events the reports do not read
    (started, rollback succeeded)."""
    started = at + timedelta(seconds=rng.lognormvariate(math.log(2.0), 0.6))
    finished = started + timedelta(seconds=rng.lognormvariate(math.log(3.0), 0.5))
    failed = rng.random() < failure_rate
    status = "failed" if failed else "succeeded"
    updated = finished
    execution_id = str(eid)
    if not compact:
        started_data = {"execution": execution_id, "status": "running", "attempt": 1}
        out.event(started, SYSTEM, SYSTEM, "execution.started", pid, started_data)
    if failed:
        failure = {
            "execution": execution_id,
            "status": "failed",
            "attempt": 1,
            "error": "connector refused the change",
        }
        out.event(finished, SYSTEM, SYSTEM, "execution.failed", pid, failure)
    else:
        success = {"execution": execution_id, "status": "succeeded", "attempt": 1}
        out.event(finished, SYSTEM, SYSTEM, "execution.succeeded", pid, success)
        if not good and reversible and rng.random() < 0.6:
            asked = finished + timedelta(minutes=rng.uniform(5, 240))
            if until is None or asked < until:
                status = "rolled_back"
                updated = _rolled_back(out, pid=pid, eid=eid, asked=asked, compact=compact)
    out.executions.append(
        (
            eid,
            pid,
            status,
            uuid.uuid4().hex,
            1,
            1 if status == "rolled_back" else 0,
            json.dumps({"ok": not failed}),
            "connector refused the change" if failed else "",
            at,
            at,
            started,
            finished,
            updated,
        )
    )


def _rolled_back(
    out: Generated, *, pid: Any, eid: uuid.UUID, asked: datetime, compact: bool
) -> datetime:
    """An analyst asks for the rollback at `asked`, minutes or hours after the action; returns
    when it was done."""
    done = asked + timedelta(seconds=4)
    request = {"execution": str(eid), "status": "rolling_back", "reason": "false positive"}
    out.event(asked, "user", "analyst2", "execution.rollback_requested", pid, request)
    if not compact:
        rolled = {"execution": str(eid), "status": "rolled_back", "attempt": 1}
        out.event(done, SYSTEM, SYSTEM, "execution.rollback_succeeded", pid, rolled)
    return done
