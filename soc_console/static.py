"""Static files, served by WhiteNoise in front of the ASGI application.

`collectstatic` writes every file under a content-hashed name, gzipped beside it, with a
manifest (STORAGES in settings); WhiteNoise serves those names with a year's Cache-Control and
`immutable`, the gzipped copy to browsers that accept it, and answers conditional requests.

WhiteNoise's Django middleware is synchronous: in the async handler Django would move every
request, the API's included, to a thread and back just to ask it whether the path is a static
file. Here its table of files is consulted before Django, on the event loop, and only the
file's bytes are read on a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.responders import StaticFile

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHUNK_BYTES = 64 * 1024


class StaticFiles:
    """ASGI: a path WhiteNoise knows is answered from its files; anything else goes to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Reads STATIC_ROOT (and, with DEBUG, the apps' static folders) once, at start-up.
        self.whitenoise = WhiteNoiseMiddleware()
        self.prefix: str = self.whitenoise.static_prefix

    def _find(self, path: str) -> StaticFile | None:
        if self.whitenoise.autorefresh:  # DEBUG: files edited since start-up are found too
            return self.whitenoise.find_file(path)
        return self.whitenoise.files.get(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            static_file = self._find(scope["path"])
            if static_file is not None:
                await self._serve(static_file, scope, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _serve(static_file: StaticFile, scope: Scope, send: Send) -> None:
        # WhiteNoise reads request headers the WSGI way (HTTP_ACCEPT_ENCODING, HTTP_RANGE, …).
        environ = {
            "HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        response = static_file.get_response(scope["method"], environ)
        await send(
            {
                "type": "http.response.start",
                "status": int(response.status),
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in response.headers
                ]
                # Django's SecurityMiddleware never sees these answers; of its headers, this
                # is the one that matters for a file.
                + [(b"x-content-type-options", b"nosniff")],
            }
        )
        file = response.file
        if file is None:  # HEAD, 304, 405
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            file.close()
