"""Open consoles on /metrics, counted over the live server's two worker processes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import websockets
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests import factories

# PostgreSQL only (the SQLite run leaves these out): committed rows read by other sessions.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _consoles(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "soc_consoles_connected":
            return family.samples[0].value
    raise AssertionError("no soc_consoles_connected")


async def _until(url: str, expected: float) -> float:
    deadline = time.monotonic() + 5
    seen = await asyncio.to_thread(_consoles, url)
    while seen != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        seen = await asyncio.to_thread(_consoles, url)
    return seen


def test_consoles_connected_counts_every_web_process(live_server_url: str) -> None:
    browser = Client()
    browser.force_login(factories.user("alice", factories.ANALYST))
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    socket_url = live_server_url.replace("http://", "ws://") + "/ws/queue/"

    async def scenario() -> list[float]:
        seen = [await _until(live_server_url, 0)]
        sockets = []
        # Several connections: the kernel spreads them over both worker processes.
        for _ in range(6):
            sockets.append(
                await websockets.connect(
                    socket_url, origin=live_server_url, additional_headers={"Cookie": cookie}
                )
            )
        seen.append(await _until(live_server_url, 6))
        for socket in sockets[:4]:
            await socket.close()
        seen.append(await _until(live_server_url, 2))
        for socket in sockets[4:]:
            await socket.close()
        seen.append(await _until(live_server_url, 0))
        return seen

    assert asyncio.run(scenario()) == [0, 6, 2, 0]
