"""The console's websocket: signed-in users join one group and receive rendered HTML.

No database work here: the services render and broadcast; this only forwards. The one thing
a browser sends is which card its analyst is looking at, relayed to the others.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils.html import escape

from .live import GROUP


class ConsoleConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=4401)
            return
        self.username = user.get_username()
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message: Any = json.loads(text_data or "{}")
            proposal_id = uuid.UUID(str(message.get("reviewing")))
        except (ValueError, TypeError, AttributeError):
            return  # anything else a browser sends is ignored
        html = (
            f'<span id="reviewing-{proposal_id}" hx-swap-oob="true" class="reviewing" '
            f'data-reviewer="{escape(self.username)}">being reviewed by '
            f"{escape(self.username)}</span>"
        )
        await self.channel_layer.group_send(GROUP, {"type": "console.html", "html": html})

    async def console_html(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])
