"""Every API error as application/problem+json (RFC 9457) with a clear detail."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .errors import DomainError

PROBLEM_TYPE = "https://soc-console.invalid/problems/"


def problem(
    *,
    status_code: int,
    title: str,
    detail: str,
    code: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
        **{k: v for k, v in extra.items() if v is not None},
    }
    response = Response(body, status=status_code, headers=headers)
    response.content_type = "application/problem+json"
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
