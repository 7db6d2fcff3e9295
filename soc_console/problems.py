"""Every API error as application/problem+json (RFC 9457) with a clear detail."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from kombu.exceptions import OperationalError as BrokerError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .errors import DomainError

PROBLEM_TYPE = "https://soc-console.invalid/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
API_PREFIX = "/api/v1/"
# What a client is told to wait when a dependency is down: about one reconnect of the pool.
OUTAGE_RETRY_AFTER_SECONDS = 5

logger = logging.getLogger(__name__)


def problem_body(*, status_code: int, title: str, detail: str, code: str, **extra: Any) -> dict:
    return {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
        **{k: v for k, v in extra.items() if v is not None},
    }


def problem(*, headers: dict[str, str] | None = None, **fields: Any) -> Response:
    """A problem answer through DRF: `fields` as problem_body takes them."""
    body = problem_body(**fields)
    response = Response(body, status=body["status"], headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(value, dict):
                for sub, messages in _flatten(value).items():
                    out[key if sub == "non_field_errors" else f"{key}.{sub}"] = messages
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for index, item in enumerate(value):
                    for sub, messages in _flatten(item).items():
                        out[f"{key}.{index}.{sub}"] = messages
            else:
                out[key] = [str(v) for v in (value if isinstance(value, list) else [value])]
        return out
    if isinstance(detail, list):
        return {"non_field_errors": [str(v) for v in detail]}
    return {"non_field_errors": [str(detail)]}


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return problem(
            status_code=exc.status,
            title=exc.title,
            detail=exc.detail,
            code=exc.code,
            **exc.extra,
        )
    if isinstance(exc, Http404):
        return problem(
            status_code=404, title="Not found", detail="No such resource.", code="not_found"
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        fields = ", ".join(sorted(errors))
        return problem(
            status_code=400,
            title="Invalid input",
            detail=f"The request has invalid fields: {fields}. Nothing was recorded.",
            code="invalid",
            errors=errors,
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    headers = {
        k: v for k, v in response.headers.items() if k in ("Retry-After", "WWW-Authenticate")
    }
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.Throttled):
        code = "rate_limited"
        detail = (
            f"Too many requests for this API key; retry in {exc.wait:.0f} s."
            if exc.wait
            else "Too many requests for this API key."
        )
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response.status_code = status.HTTP_401_UNAUTHORIZED
        detail = str(exc.detail)
        if isinstance(exc, exceptions.NotAuthenticated):
            detail = "Missing credentials: send 'Authorization: Bearer <api key>'."
    else:
        detail = str(getattr(exc, "detail", exc))
    return problem(
        status_code=response.status_code,
        title=response.status_text if hasattr(response, "status_text") else "Error",
        detail=detail,
        code=str(code),
        headers=headers,
    )


# Failures that mean a service the console depends on is down, not that the request or the code
# is wrong: the client is told to come back, never handed a 500. Of the database's errors only
# the connection-level ones qualify; bad data (DataError, IntegrityError) is a bug to see.
OUTAGES: tuple[type[BaseException], ...] = (
    redis.RedisError,
    BrokerError,
    OperationalError,
    InterfaceError,
)

# Headers of an error answer that still mean something once it is rewritten as a problem.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def plain_problem(*, headers: dict[str, str] | None = None, **fields: Any) -> HttpResponse:
    """A problem answer made without DRF, for middleware and Django's own error answers:
    `fields` as problem_body takes them."""
    body = problem_body(**fields)
    response = HttpResponse(
        json.dumps(body).encode(), status=body["status"], content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def outage_problem() -> HttpResponse:
    return plain_problem(
        status_code=503,
        title="Service unavailable",
        detail=(
            "A service the console depends on is not answering; retry in "
            f"{OUTAGE_RETRY_AFTER_SECONDS} s. A retried proposal with the same Idempotency-Key "
            "is never recorded twice."
        ),
        code="unavailable",
        headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
    )


def _reworded(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An error answer from outside the API's own handler (Django's 404 for a path no pattern
    matches, its 400 for a bad Host header, …) as the same status in problem+json."""
    code = response.status_code
    try:
        title = HTTPStatus(code).phrase
    except ValueError:
        title = "Error"
    problem_code = title.lower().replace(" ", "_").replace("-", "_")
    if code == 404:
        detail = f"No API endpoint at {request.path!r}. See /api/v1/docs/."
    elif code >= 500:
        detail = "The console failed to answer this request; the error is logged."
    elif code == 400 and _host_refused(request):
        detail = (
            f"The Host header {request.META.get('HTTP_HOST', '')!r} names no host this console "
            "answers to (ALLOWED_HOSTS): call it by the name in PUBLIC_URL."
        )
        problem_code = "host_not_allowed"
    else:
        detail = f"{title}."
    headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
    return plain_problem(
        status_code=code,
        title=title,
        detail=detail,
        code=problem_code,
        headers=headers,
    )


def _host_refused(request: HttpRequest) -> bool:
    """Whether Django refused the request's Host header (its 400 then says nothing more)."""
    try:
        request.get_host()
    except DisallowedHost:
        return True
    return False


class ApiProblemMiddleware:
    """Every error under /api/v1/ answers in problem+json, whichever layer produced it.

    First in MIDDLEWARE, so it also sees what Django itself answers before any view runs.
    It works in the event loop under ASGI (no thread hop per request) and costs a prefix test
    on every other request.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return self._checked(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self._checked(request, await self.get_response(request))

    @staticmethod
    def _checked(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            response.status_code >= 400
            and request.path.startswith(API_PREFIX)
            and not response.get("Content-Type", "").startswith(PROBLEM_CONTENT_TYPE)
        ):
            return _reworded(request, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, OUTAGES):
            logger.warning(
                "%s %s: answered 503, a dependency is down: %r",
                request.method,
                request.path,
                exception,
            )
            return outage_problem()
        # As Django logs an unhandled error, then answered in the API's format.
        logging.getLogger("django.request").error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"status_code": 500, "request": request},
        )
        return plain_problem(
            status_code=500,
            title="Internal Server Error",
            detail="The console failed to answer this request; the error is logged.",
            code="internal_error",
        )
