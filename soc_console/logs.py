"""Logs: which request, proposal and execution each line concerns; JSON lines on demand.

The request middleware and the Celery task hooks keep the request id, proposal id and
execution id in context variables; a filter on the log handler copies them onto every record
as it is logged (a record formatted later, on another thread, keeps them); with
LOG_FORMAT=json each record is written as one JSON object on one line.

A request id comes from the incoming X-Request-ID (a load balancer's or proxy's, when it is a
sane token) or is made here, and goes back in the response's X-Request-ID. A task carries the
id of the request that enqueued it in its message headers.
"""

from __future__ import annotations

import inspect
import json
import logging
import logging.config
import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.http import HttpRequest, HttpResponse

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
proposal_id: ContextVar[str | None] = ContextVar("proposal_id", default=None)
execution_id: ContextVar[str | None] = ContextVar("execution_id", default=None)
CONTEXT = {"request_id": request_id, "proposal_id": proposal_id, "execution_id": execution_id}

HEADER = "X-Request-ID"
# What an incoming id may be: a proxy's UUID or trace id, not arbitrary text for the logs.
ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# The console's and the API's URLs name the proposal or execution they act on this way; a
# pattern here costs nothing, where a view hook would cost every async request a thread hop.
PATH_IDS = re.compile(rf"/(proposals|executions)/({UUID})(?:/|$)")


def configure(config: dict[str, Any]) -> None:
    """LOGGING_CONFIG: the settings' LOGGING, and Python's warnings as log records (plain text
    on stderr otherwise, in the middle of JSON lines)."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


class ContextFilter(logging.Filter):
    """Copies the context (request, proposal, execution) onto each record, unless the call
    named one itself (`extra={"proposal_id": …}`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Django logs a request's 4xx and 5xx answers after the middleware has returned, with
        # the request on the record: its ids come from there.
        from_request = getattr(getattr(record, "request", None), "log_ids", {})
        for name, var in CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get() or from_request.get(name))
        return True


class ClientErrorFilter(logging.Filter):
    """A request answered 4xx (an analyst opening a manager's page: 403) is the client's
    doing, not a fault in the console: Django logs it as a warning and attaches the exception,
    whose traceback would fill the log on every refusal. The line stays, without it; a 5xx
    keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included, escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = str(value)
        status = getattr(record, "status_code", None)
        if isinstance(status, int):
            entry["status"] = status
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _bind(**values: str | None) -> list[tuple[ContextVar[str | None], Token[str | None]]]:
    return [(CONTEXT[name], CONTEXT[name].set(value)) for name, value in values.items()]


def _unbind(tokens: list[tuple[ContextVar[str | None], Token[str | None]]]) -> None:
    for var, token in reversed(tokens):
        var.reset(token)


class RequestContextMiddleware:
    """First in MIDDLEWARE: everything logged while a request is handled carries its id."""

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _begin(self, request: HttpRequest) -> list[tuple[ContextVar[str | None], Token]]:
        incoming = request.headers.get(HEADER, "")
        rid = incoming if ACCEPTED_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = rid  # type: ignore[attr-defined]
        ids: dict[str, str | None] = {"request_id": rid}
        match = PATH_IDS.search(request.path)
        if match:
            kind = "proposal_id" if match.group(1) == "proposals" else "execution_id"
            ids[kind] = match.group(2).lower()
        request.log_ids = ids  # type: ignore[attr-defined]
        return _bind(**ids)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        tokens = self._begin(request)
        try:
            response = self.get_response(request)
        finally:
            _unbind(tokens)
        response[HEADER] = request.request_id  # type: ignore[attr-defined]
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        tokens = self._begin(request)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        finally:
            _unbind(tokens)
        response[HEADER] = request.request_id  # type: ignore[attr-defined]
        return response


# --- Celery ---------------------------------------------------------------------------------

_task_tokens: dict[str, list[tuple[ContextVar[str | None], Token]]] = {}


@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    rid = request_id.get()
    if rid is not None and headers is not None:
        headers.setdefault("request_id", rid)


@task_prerun.connect
def _bind_task(
    task_id: str = "",
    task: Task | None = None,
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    **rest: Any,
) -> None:
    if task is None:
        return
    request = task.request
    # A worker puts a message's headers on the request; apply() keeps them under `headers`.
    rid = getattr(request, "request_id", None) or (request.headers or {}).get("request_id")
    ids: dict[str, str | None] = {"request_id": rid or task_id}
    try:
        # The tasks take the id they act on by name: execution_id, proposal_id.
        named = inspect.signature(task.run).bind_partial(*args, **(kwargs or {})).arguments
    except TypeError:
        named = {}
    for name in ("proposal_id", "execution_id"):
        if named.get(name) is not None:
            ids[name] = str(named[name])
    _task_tokens[task_id] = _bind(**ids)


@task_postrun.connect
def _unbind_task(task_id: str = "", **kwargs: Any) -> None:
    tokens = _task_tokens.pop(task_id, None)
    if tokens:
        _unbind(tokens)
