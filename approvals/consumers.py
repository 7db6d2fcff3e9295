"""The console's websocket: signed-in users receive the HTML the services broadcast.

No database work here: the services render and broadcast; this only forwards. The one thing
a browser sends is which card its analyst is looking at, relayed to the others.

Fan-out happens once per server process. Rather than every console joining the channel-layer
group (one decode and one dispatch per console per broadcast, which at 200 consoles and 20
proposals a second cost a 2-core server more CPU than it had, see bench/live.py), each process
keeps one relay channel in the group and hands the HTML it receives to its local consoles.
Each console has a bounded outbox and its own sender, so that one slow browser neither
delays the others nor gets its updates out of order; a console that falls too far behind is
closed with 1013 ("try again later"), and its page reconnects and re-fetches the queue rather
than quietly missing an update.

A console streams only while its session lasts. It joins its session's and its user's
channel-layer groups (approvals/sessions.py): signing out closes it at once, a deactivation or
a role taken away makes it read its session again, and it reads its session again every
CONSOLE_SESSION_CHECK_SECONDS, for the expiry nobody announces. A console whose session has
ended is closed with 4401 ("signed out"), one whose user has no console role left with 4403;
the page says so and does not reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
import weakref
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.utils.crypto import constant_time_compare
from django.utils.html import escape

from soc_console import roles

from . import presence, sessions
from .live import GROUP

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 500  # updates a console may fall behind before it is told to reconnect
# Sent after CONSOLE_HEARTBEAT_SECONDS with nothing else to send; the page drops it (console.js).
BEAT = '<template data-beat=""></template>'
# "Being reviewed by" frames one console may relay to all the others: a burst, then a steady
# rate. Past it frames are dropped, except that the newest is sent when the budget allows, so
# an analyst running down the queue with j still ends up shown on the card they stopped at.
# Without a limit one console (any console role) could make every other console render its
# frames as fast as it sends them.
REVIEW_BURST = 5
REVIEW_PER_SECOND = 2.0

SIGNED_OUT = 4401  # the session has ended: signed out, expired, or the user deactivated
NOT_ALLOWED = 4403  # signed in, without a console role


def _session_refusal(session_key: str, user_id: int) -> int | None:
    """Why a console opened with this session may no longer stream (a close code), or None.

    The session is read again from its store and checked as the socket's sign-in was
    (channels.auth.get_user), without changing it: ended, expired, signed in as someone else,
    its user's password changed, or the user deactivated (the backend then finds nobody) is
    SIGNED_OUT; no console role left is NOT_ALLOWED."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    backend_path = session.get(auth.BACKEND_SESSION_KEY)
    if session.get(auth.SESSION_KEY) != str(user_id) or (
        backend_path not in settings.AUTHENTICATION_BACKENDS
    ):
        return SIGNED_OUT
    user = auth.load_backend(backend_path).get_user(user_id)
    if (
        user is None
        or not user.is_active
        or not constant_time_compare(
            session.get(auth.HASH_SESSION_KEY) or "", user.get_session_auth_hash()
        )
    ):
        return SIGNED_OUT
    if not roles.can_view_console(user):
        return NOT_ALLOWED
    return None


class _Relay:
    """The group member of one server process (one event loop): fans out to local consoles."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.consoles: set[ConsoleConsumer] = set()
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def join(self, console: ConsoleConsumer) -> None:
        async with self.lock:
            if self.task is None:
                channel = await self.layer.new_channel(prefix="console-relay.")
                # In the group before the first console is accepted: nothing committed after
                # a page's socket opens can be missed.
                await self.layer.group_add(GROUP, channel)
                self.task = asyncio.create_task(self._run(channel))
        self.consoles.add(console)

    def leave(self, console: ConsoleConsumer) -> None:
        # The relay stays for the life of the process: one idle subscription costs nothing.
        self.consoles.discard(console)

    async def _run(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except Exception:
                # Redis away: keep trying. What was broadcast meanwhile is lost to this
                # process; the next broadcast or the page's next re-fetch corrects it.
                logger.warning("console relay: receive failed", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if message.get("type") == "console.html":
                for console in list(self.consoles):
                    console.deliver(message["html"])


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Relay] = weakref.WeakKeyDictionary()


def _relay_for(layer: Any) -> _Relay:
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop)
    if relay is None or relay.layer is not layer:
        relay = _relays[loop] = _Relay(layer)
    return relay


class ConsoleConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        session_key = getattr(self.scope.get("session"), "session_key", None)
        if user is None or not user.is_authenticated or not user.is_active or not session_key:
            await self.close(code=SIGNED_OUT)
            return
        # The same rule as every console page: signed in is not enough, a console role is.
        # This look-up at connect, and the session's re-reads (_watch_session), are the only
        # database work the consumer does.
        if not await database_sync_to_async(roles.can_view_console)(user):
            await self.close(code=NOT_ALLOWED)
            return
        self.username = user.get_username()
        self.user_id = user.pk
        self.session_key = session_key
        self.ended = False
        # Before the socket is accepted: a sign-out from then on reaches it.
        self.session_groups = [
            sessions.session_group(session_key),
            sessions.user_group(user.pk),
        ]
        for group in self.session_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.review_budget = float(REVIEW_BURST)
        self.review_budget_at = asyncio.get_running_loop().time()
        self.review_latest: uuid.UUID | None = None  # dropped, to be sent when budget allows
        self.review_later: asyncio.Task[None] | None = None
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.sender = asyncio.create_task(self._send_outbox())
        self.beat: asyncio.Task[None] | None = None
        self.relay = _relay_for(self.channel_layer)
        await self.relay.join(self)
        await self.accept()
        self.sent_at = asyncio.get_running_loop().time()
        self.beat = asyncio.create_task(self._beat())  # once accepted: disconnect ends it
        presence.opened()
        self.watch = asyncio.create_task(self._watch_session())

    async def disconnect(self, code: int) -> None:
        sender = getattr(self, "sender", None)
        if sender is None:
            return  # refused at connect: nothing was set up
        presence.closed()
        self.relay.leave(self)
        sender.cancel()
        self._stop_beat()
        watch = getattr(self, "watch", None)
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        if self.review_later is not None:
            self.review_later.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        for group in self.session_groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.warning("console of %s: leaving %s failed", self.username, group)

    async def console_session_ended(self, message: dict[str, Any]) -> None:
        """Signed out (approvals/sessions.py): nothing more goes to this socket."""
        await self._end(SIGNED_OUT)

    async def console_recheck(self, message: dict[str, Any]) -> None:
        """The user was deactivated or lost a role: read the session again."""
        await self._recheck()

    async def console_user_html(self, message: dict[str, Any]) -> None:
        """HTML for this user's consoles alone (approvals/sessions.py: an undo toast), in
        order with everything else this console is sent."""
        if not self.ended:
            self.deliver(message["html"])

    async def _watch_session(self) -> None:
        """Read the session again every CONSOLE_SESSION_CHECK_SECONDS: an expiry sends no
        event. The first read comes after a random part of the period, so that consoles
        opened together (a server restart) do not all read at once."""
        period = settings.CONSOLE_SESSION_CHECK_SECONDS
        await asyncio.sleep(period * random.uniform(0.5, 1.0))  # noqa: S311 - not a secret
        while not self.ended:
            await self._recheck()
            await asyncio.sleep(period)

    async def _recheck(self) -> None:
        if self.ended:
            return
        try:
            code = await database_sync_to_async(_session_refusal)(self.session_key, self.user_id)
        except Exception:
            # The database away: keep streaming; the next read decides.
            logger.warning("console of %s: its session could not be read", self.username)
            return
        if code is not None:
            await self._end(code)

    async def _end(self, code: int) -> None:
        if self.ended:
            return
        self.ended = True
        self.relay.leave(self)  # not one more update, even one already on its way
        self.sender.cancel()
        self._stop_beat()
        reason = "signed out" if code == SIGNED_OUT else "no console role"
        await self.close(code=code, reason=reason)

    def deliver(self, html: str) -> None:
        try:
            self.outbox.put_nowait(html)
        except asyncio.QueueFull:
            logger.warning("console of %s fell behind; asking it to reconnect", self.username)
            self.relay.leave(self)
            self.sender.cancel()
            self._stop_beat()
            asyncio.get_running_loop().create_task(self.close(code=1013))

    async def _send_outbox(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            html = await self.outbox.get()
            await self.send(text_data=html)
            self.sent_at = loop.time()

    def _stop_beat(self) -> None:
        if self.beat is not None:
            self.beat.cancel()

    async def _beat(self) -> None:
        """After CONSOLE_HEARTBEAT_SECONDS with nothing sent, send a beat (through the outbox,
        in order): the page still hears that the line holds. Asleep while updates flow, so
        it costs the sending nothing."""
        period = settings.CONSOLE_HEARTBEAT_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self.sent_at + period - loop.time()))
            if loop.time() - self.sent_at >= period:
                self.deliver(BEAT)
                self.sent_at = loop.time()  # on its way: the next one a period from now

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.ended:
            return
        try:
            message: Any = json.loads(text_data or "{}")
            proposal_id = uuid.UUID(str(message.get("reviewing")))
        except (ValueError, TypeError, AttributeError):
            return  # anything else a browser sends is ignored
        if self._take_review_budget():
            self.review_latest = None
            await self._relay_review(proposal_id)
            return
        self.review_latest = proposal_id
        if self.review_later is None:
            self.review_later = asyncio.create_task(self._relay_latest_review())

    def _take_review_budget(self) -> bool:
        now = asyncio.get_running_loop().time()
        elapsed = now - self.review_budget_at
        self.review_budget = min(REVIEW_BURST, self.review_budget + elapsed * REVIEW_PER_SECOND)
        self.review_budget_at = now
        if self.review_budget < 1.0:
            return False
        self.review_budget -= 1.0
        return True

    async def _relay_latest_review(self) -> None:
        try:
            while self.review_latest is not None:
                await asyncio.sleep((1.0 - self.review_budget) / REVIEW_PER_SECOND)
                if self.review_latest is not None and self._take_review_budget():
                    proposal_id, self.review_latest = self.review_latest, None
                    await self._relay_review(proposal_id)
        finally:
            self.review_later = None

    async def _relay_review(self, proposal_id: uuid.UUID) -> None:
        html = (
            f'<span id="reviewing-{proposal_id}" hx-swap-oob="true" class="reviewing" '
            f'data-reviewer="{escape(self.username)}">being reviewed by '
            f"{escape(self.username)}</span>"
        )
        await self.channel_layer.group_send(GROUP, {"type": "console.html", "html": html})
