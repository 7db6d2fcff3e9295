"""Logs say which request, proposal and execution they concern; LOG_FORMAT=json writes one JSON
object per line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from agents.models import Agent
from approvals import tasks
from approvals.models import Execution
from soc_console import logs
from tests import factories
from tests.execution.conftest import approved
from tests.processes import free_port, wait_for


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The web server as the Procfile runs it, with LOG_FORMAT=json; its log in a file."""
    port = free_port()
    log_path = tmp_path / "server.log"
    static = tmp_path / "static"
    static.mkdir()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "soc_console.serve", "--port", str(port), "--workers", "1"],
            cwd=settings.BASE_DIR,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "soc_console.settings",
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "INFO",
                "STATIC_ROOT": str(static),
            },
            stdout=subprocess.DEVNULL,  # the launcher's own notes; the workers log to stderr
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/api/v1/nothing/", timeout=1).status_code == 404
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, timeout=30, what="the server")
        yield url, log_path
    finally:
        server.terminate()
        server.wait(timeout=15)


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    # Every line is one complete JSON object: nothing spans lines, nothing is plain text.
    return [json.loads(line) for line in text.splitlines() if line]


def test_json_lines_carry_the_request_and_proposal(json_server: tuple[str, Path]) -> None:
    url, log_path = json_server
    proposal_id = str(uuid.uuid4())
    given = httpx.get(
        f"{url}/api/v1/proposals/{proposal_id}/", headers={"X-Request-ID": "trace-4821.a"}
    )
    made = httpx.get(f"{url}/api/v1/proposals/{proposal_id}/withdraw/")
    insane = "<script>" + "x" * 200  # not an id: another is made
    refused = httpx.get(f"{url}/api/v1/agent/", headers={"X-Request-ID": insane})
    assert given.status_code == made.status_code == refused.status_code == 401
    assert given.headers["X-Request-ID"] == "trace-4821.a"
    generated = made.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    replaced = refused.headers["X-Request-ID"]
    assert replaced != insane and len(replaced) == 32

    def logged() -> list[dict[str, Any]]:
        found = [
            e
            for e in _lines(log_path)
            if e["logger"] == "django.request" and e["message"].startswith("Unauthorized")
        ]
        return found if len(found) == 3 else []

    first, second, third = wait_for(logged, timeout=10, what="three request log lines")
    for entry in (first, second, third):
        assert set(entry) >= {"time", "level", "logger", "message", "request_id"}
        assert entry["level"] == "WARNING"
        assert entry["status"] == 401
    assert first["request_id"] == "trace-4821.a"
    assert first["proposal_id"] == proposal_id
    assert first["message"] == f"Unauthorized: /api/v1/proposals/{proposal_id}/"
    assert second["request_id"] == generated
    assert second["proposal_id"] == proposal_id
    assert third["request_id"] == replaced
    assert "proposal_id" not in third
    # uvicorn's own lines are JSON too.
    assert any(e["logger"].startswith("uvicorn") for e in _lines(log_path))


def test_the_formatter_writes_one_line_per_record_even_with_a_traceback() -> None:
    formatter = logs.JsonFormatter()
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        record = logging.LogRecord(
            "approvals.services", logging.ERROR, __file__, 1, "it failed:\n%s", ("why",), None
        )
        record.exc_info = sys.exc_info()
    logs.ContextFilter().filter(record)
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "it failed:\nwhy"
    assert "ValueError: first line\nsecond line" in entry["exception"]
    assert entry["time"].endswith("+00:00")


@pytest.mark.django_db
def test_a_task_logs_with_its_execution_and_the_request_that_sent_it(
    caplog: pytest.LogCaptureFixture, responder: factories.AgentWithKey
) -> None:
    analyst = factories.user("alice", factories.ANALYST)
    execution = approved(responder, analyst, action="isolate_host", target="ws-7.corp.example")
    caplog.handler.addFilter(logs.ContextFilter())
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    tasks.run_execution.apply(args=[str(execution.pk)], headers={"request_id": "req-77"})
    assert Execution.objects.get(pk=execution.pk).status == "succeeded"
    done = [r for r in caplog.records if "succeeded in" in r.getMessage()]
    assert len(done) == 1
    assert done[0].execution_id == str(execution.pk)
    assert done[0].request_id == "req-77"
    # Outside the task, nothing is bound any more.
    assert logs.execution_id.get() is None and logs.request_id.get() is None


@pytest.mark.django_db
def test_a_callback_task_logs_with_its_proposal(
    caplog: pytest.LogCaptureFixture, responder: factories.AgentWithKey
) -> None:
    proposal = factories.proposal(responder, target="ws-8.corp.example")
    Agent.objects.filter(pk=responder.agent.pk).update(
        callback_url="https://agent.example/cb", callback_secret=""
    )
    caplog.handler.addFilter(logs.ContextFilter())
    task = tasks.deliver_callback.apply(args=[str(proposal.id), "completed"])
    assert task.result is None  # refused: a URL without a secret
    warned = [r for r in caplog.records if "no secret" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].proposal_id == str(proposal.id)
    assert warned[0].request_id == task.id  # no request sent it: the task's own id


@pytest.mark.django_db
def test_a_task_sent_while_a_request_is_handled_carries_its_id() -> None:
    token = logs.request_id.set("req-from-console")
    try:
        tasks.heartbeat.delay()
    finally:
        logs.request_id.reset(token)
    tasks.heartbeat.delay()
    waiting = redis.Redis.from_url(settings.CELERY_BROKER_URL).lrange(
        settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1
    )
    # Producers push on the left: the oldest message is last.
    first, second = (json.loads(message)["headers"] for message in reversed(waiting))
    assert first["request_id"] == "req-from-console"
    assert "request_id" not in second
