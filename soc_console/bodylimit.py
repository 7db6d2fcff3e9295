"""The API's body limit, applied before Django or authentication sees the request.

Django's ASGI handler reads the whole body into a spooled temporary file before any middleware
or view runs, so a limit checked in a view comes after the disk write: a 300 MB POST without a
key was stored before its 401. This wrapper sits in front of Django for /api/v1/: a declared
Content-Length over API_MAX_BODY_BYTES is refused at once without reading a byte of the body,
and a body without one (chunked) is read only up to the limit plus one byte.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from .problems import API_PREFIX, PROBLEM_CONTENT_TYPE, problem_body

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class ApiBodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        limit: int = settings.API_MAX_BODY_BYTES
        declared = _content_length(scope)
        if declared is not None:
            if declared == -1:
                await _answer(
                    send,
                    400,
                    "Bad Request",
                    "The Content-Length header is not a number.",
                    code="bad_content_length",
                )
            elif declared > limit:
                await _too_large(send, limit, declared)
            else:
                await self.app(scope, receive, send)  # the server reads no more than declared
            return
        # No Content-Length (a chunked body, or none at all): read what there is, up to the
        # limit and one byte more, then hand it on as it came, with its length now known
        # (Django reads no further than Content-Length, and without one reads nothing).
        read: list[Message] = []
        size = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break  # the client went away; Django hears of it from the replay
            size += len(message.get("body", b""))
            if size > limit:
                await _too_large(send, limit, None)
                return
            if not message.get("more_body", False):
                break
        if size:
            length = (b"content-length", str(size).encode())
            scope = {**scope, "headers": [*scope["headers"], length]}
        await self.app(scope, _replay(read, receive), send)


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    """The declared length, None when absent, -1 when it is not a non-negative number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


def _replay(read: list[Message], receive: Receive) -> Receive:
    pending = iter(read)

    async def replayed() -> Message:
        message = next(pending, None)
        # After the body, Django goes on listening for the client's disconnect.
        return message if message is not None else await receive()

    return replayed


async def _too_large(send: Send, limit: int, declared: int | None) -> None:
    size = f"{declared} bytes" if declared is not None else "more than that"
    await _answer(
        send,
        413,
        "Content Too Large",
        f"The limit is {limit} bytes and the body is {size}. Nothing was read or recorded.",
        code="too_large",
        errors={"body": [f"At most {limit} bytes."]},
    )


async def _answer(
    send: Send, status: int, title: str, detail: str, *, code: str, **extra: Any
) -> None:
    """Answer and close the connection: the server then reads nothing more of the body."""
    body = json.dumps(
        problem_body(status_code=status, title=title, detail=detail, code=code, **extra)
    ).encode()
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
