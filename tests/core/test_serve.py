"""The web server launcher (soc_console.serve): connections spread over the worker processes,
a port in use is refused, and a worker that dies is replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.processes import free_port, wait_for

# Unknown API paths answer 404 from the workers without touching the database.
PROBE = "/api/v1/no-such-thing/"


def _start(port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "soc_console.serve", "--port", str(port), "--workers", str(workers)],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "soc_console.settings",
            "LOG_LEVEL": "WARNING",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{PROBE}", timeout=1).status_code == 404
    except httpx.HTTPError:
        return False


def _workers(server: subprocess.Popen) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server.pid and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def _established(pid: int, port: int) -> int:
    """How many accepted connections to `port` the process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    process = _start(port, workers=2)
    try:
        wait_for(lambda: _answers(port), timeout=30, what="the server to answer")
        wait_for(lambda: len(_workers(process)) == 2, timeout=10, what="two workers")
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_burst_of_connections_is_spread_over_the_workers(
    server: tuple[subprocess.Popen, int],
) -> None:
    process, port = server
    # Sixteen agents connect at once (all connections made before any request) and keep
    # their connections open.
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        for conn in connections:
            conn.sendall(f"GET {PROBE} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        for conn in connections:
            assert conn.recv(64).startswith(b"HTTP/1.1 404")
        per_worker = {pid: _established(pid, port) for pid in _workers(process)}
    finally:
        for conn in connections:
            conn.close()
    assert sum(per_worker.values()) == 16
    # With one shared socket the first worker to wake takes the whole burst; with a socket
    # each, the kernel spreads them (all 16 on one worker: odds of 1 in 32,768).
    assert all(count > 0 for count in per_worker.values()), per_worker


def test_a_worker_that_dies_is_replaced(server: tuple[subprocess.Popen, int]) -> None:
    process, port = server
    victim = _workers(process)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: victim not in _workers(process) and len(_workers(process)) == 2,
        timeout=15,
        what="a new worker",
    )
    # Fresh connections land on both sockets, the replaced worker's included.
    for _ in range(20):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            # A request hashed to the new worker's socket waits while Django starts there.
            assert client.get(PROBE, timeout=30).status_code == 404


def test_a_port_in_use_is_refused_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _start(port, workers=2)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in output


def test_workers_that_cannot_start_stop_the_server_with_the_error() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "soc_console.serve", "--port", str(port), "--workers", "2"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "soc_console.settings",
            # Settings are read (and refused) before any worker starts; logging is configured
            # in each worker, so an unknown level makes every worker die.
            "LOG_LEVEL": "loud",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "Unknown level: 'loud'" in output
    assert "workers keep exiting at start-up" in output


def test_a_malformed_setting_stops_the_server_before_any_worker_starts() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "soc_console.serve", "--port", str(free_port()), "--workers", "2"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "soc_console.settings",
            "EXECUTION_LEASE_SECONDS": "soon",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == [
        "cannot start: EXECUTION_LEASE_SECONDS must be an integer, not 'soon'"
    ]
    assert "serving on" not in process.stdout
