"""ASGI entry point: HTTP to Django, websockets to the console consumer."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soc_console.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from approvals.consumers import ConsoleConsumer  # noqa: E402
from soc_console.bodylimit import ApiBodyLimit  # noqa: E402
from soc_console.origins import SameOriginValidator  # noqa: E402
from soc_console.static import StaticFiles  # noqa: E402

application = ProtocolTypeRouter(
    {
        # uvicorn serves nothing by itself: without this the console's CSS, htmx and its ws
        # extension 404 and the queue is neither live nor styled. WhiteNoise serves what
        # collectstatic wrote, before Django (soc_console/static.py). Ahead of everything, an
        # API body over the limit is refused before it is read.
        "http": ApiBodyLimit(StaticFiles(django_asgi_app)),
        # Origin checked against host AND port: another service on this host is another site.
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/queue/", ConsoleConsumer.as_asgi())]))
        ),
    }
)
