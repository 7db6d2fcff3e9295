"""Which pages may open the console's websocket: its own origin, host and port included.

A browser sends the Origin of the page that opens a websocket, and the session cookie goes
along whatever that page is, so the Origin is the only thing that tells the console's own page
from another site's (or from another service on the same host but another port). The rule is
the one Django's CSRF check applies to a form post: the Origin must be this server's own
scheme://host[:port], as the Host header names it and ALLOWED_HOSTS permits, or one of
CSRF_TRUSTED_ORIGINS exactly.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _secure(scope: dict[str, Any]) -> bool:
    # As HttpRequest.is_secure: behind a trusted proxy its header decides.
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        meta_name, secure_value = proxy
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
        value = _header(scope, name)
        if value is not None:
            return value.split(",")[0].strip() == secure_value
    return scope.get("scheme") == "wss"


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin = _header(scope, b"origin")
    host = _header(scope, b"host")
    if not origin or not host:
        return False
    domain, _port = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed_hosts):
        return False
    own = f"{'https' if _secure(scope) else 'http'}://{host}"
    if origin.lower() == own.lower():
        return True
    return origin.lower() in {trusted.lower() for trusted in settings.CSRF_TRUSTED_ORIGINS}


class SameOriginValidator:
    """ASGI middleware: a websocket handshake from any other origin is refused (403) before the
    consumer runs."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
