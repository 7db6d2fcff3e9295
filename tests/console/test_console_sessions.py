"""A console streams only while its session lasts: signing out, an expiry, a deactivation or
the loss of every console role closes its websocket, over the real Redis channel layer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals import live
from soc_console import roles
from soc_console.asgi import application
from tests import factories
from tests.event_loop import run_scenario

# PostgreSQL only (the SQLite run leaves these out): committed rows read by other sessions.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

HEADERS = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]


def _signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _socket(client: Client) -> WebsocketCommunicator:
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return WebsocketCommunicator(
        application, "/ws/queue/", headers=[*HEADERS, (b"cookie", cookie.encode())]
    )


async def _closed_with(socket: WebsocketCommunicator, timeout: float = 5.0) -> int:
    """The code the server closed the socket with; any update sent before is skipped."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, "the socket was not closed"
        output = await socket.receive_output(timeout=left)
        if output["type"] == "websocket.close":
            return int(output["code"])


def test_signing_out_closes_that_sessions_console_and_nothing_more_reaches_it(
    analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    tab, other_browser = _signed_in(analyst), _signed_in(analyst)

    async def scenario() -> None:
        signed_out, still_in = _socket(tab), _socket(other_browser)
        assert (await signed_out.connect())[0]
        assert (await still_in.connect())[0]

        response = await sync_to_async(tab.post)(reverse("logout"))
        assert response.status_code == 302
        assert await _closed_with(signed_out) == 4401

        # The same analyst's other session is not signed out: it keeps streaming.
        proposal = await sync_to_async(factories.proposal)(
            agent_with_key, target="signedout-ws01.corp.example"
        )
        await sync_to_async(live.wait_idle)()
        card = await still_in.receive_from(timeout=5)
        while f'data-card="{proposal.pk}"' not in card:
            card = await still_in.receive_from(timeout=5)
        assert "signedout-ws01.corp.example" in card
        assert await signed_out.receive_nothing(timeout=0.3)
        await still_in.disconnect()
        await signed_out.disconnect()

    run_scenario(scenario)


def test_an_expired_session_stops_streaming_within_the_check_period(
    analyst: User, settings: Any
) -> None:
    settings.CONSOLE_SESSION_CHECK_SECONDS = 0.2
    tab = _signed_in(analyst)
    key = tab.cookies[settings.SESSION_COOKIE_NAME].value

    async def scenario() -> None:
        socket = _socket(tab)
        assert (await socket.connect())[0]
        assert await socket.receive_nothing(timeout=0.5)  # a live session: it stays open
        await sync_to_async(Session.objects.filter(session_key=key).update)(
            expire_date=timezone.now() - timedelta(seconds=1)
        )
        assert await _closed_with(socket, timeout=2) == 4401
        await socket.disconnect()

    run_scenario(scenario)


def test_a_deactivated_users_consoles_close_at_once(analyst: User) -> None:
    tab = _signed_in(analyst)

    async def scenario() -> None:
        socket = _socket(tab)
        assert (await socket.connect())[0]
        user = await sync_to_async(User.objects.get)(pk=analyst.pk)
        user.is_active = False
        await sync_to_async(user.save)()
        assert await _closed_with(socket, timeout=2) == 4401
        await socket.disconnect()

    run_scenario(scenario)


def test_a_user_who_loses_every_console_role_is_closed_and_one_who_keeps_one_is_not(
    analyst: User, senior: User
) -> None:
    senior.groups.add(*analyst.groups.all())  # senior analyst and analyst
    analyst_tab, senior_tab = _signed_in(analyst), _signed_in(senior)

    async def scenario() -> None:
        analyst_socket, senior_socket = _socket(analyst_tab), _socket(senior_tab)
        assert (await analyst_socket.connect())[0]
        assert (await senior_socket.connect())[0]
        await sync_to_async(analyst.groups.clear)()
        role = await sync_to_async(Group.objects.get)(name=roles.ANALYST)
        await sync_to_async(senior.groups.remove)(role)
        assert await _closed_with(analyst_socket, timeout=2) == 4403
        assert await senior_socket.receive_nothing(timeout=0.5)  # still a senior analyst
        await analyst_socket.disconnect()
        await senior_socket.disconnect()

    run_scenario(scenario)
