"""Live-update benchmark: from the agent API's 201 to the card's arrival in every open console.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.live \\
        [--clients 200] [--rate 20] [--duration 20] [--workers 1]

Creates (afresh) and migrates its own PostgreSQL database (`soc_bench_live` on the
DATABASE_URL server), starts its own server (soc_console.serve) on a free port with the
project's Redis channel layer under its own prefix (REDIS_URL, default redis://127.0.0.1:6379/0;
CHANNEL_PREFIX, default bench-live), and signs in M analysts: sessions written directly
through Django's session engine, each analyst a websocket client (the `websockets` package,
with the Origin header a browser sends) in separate client processes, so that the clients'
own event loops do not sit in the poster's measurement.

An agent then posts proposals at R per second for D seconds. For every proposal and every
client, the latency is the card's arrival (matched on the proposal id in the HTML) minus the
moment the poster received the API's 201; both are CLOCK_MONOTONIC readings on this machine,
comparable across processes. Since the services broadcast on commit, before the view returns,
a card can arrive before its 201: those latencies are negative and reported as they are, next
to the time from sending the request to the card's arrival.

In the same run, a reference probe measures the raw channel layer: group_send of a card-sized
message to a group of M channels in this process, and the time until each receives it. The
server's CPU time (its process and workers, from /proc) is printed per accepted proposal.

Prints what it measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    drop_database,
    free_port,
    machine,
    percentile,
    scratch_database,
    start_server,
)

DATABASE = "soc_bench_live"
CARD_ID = re.compile(r'<article id="card-([0-9a-f-]{36})"')


@dataclass
class Series:
    name: str
    millis: list[float] = field(default_factory=list)

    def line(self) -> str:
        if not self.millis:
            return f"  {self.name:<46} no samples"
        return (
            f"  {self.name:<46} n {len(self.millis):6d}   p50 {percentile(self.millis, 50):7.1f} ms"
            f"   p99 {percentile(self.millis, 99):7.1f} ms   max {max(self.millis):7.1f} ms"
        )


# --- websocket clients (child processes; no Django here) -----------------------------------


async def _client_loop(
    url: str, origin: str, cookies: list[tuple[int, str]], ready: Any, stop: Any
) -> list[tuple[str, int, float, float]]:
    import websockets

    arrivals: list[tuple[str, int, float, float]] = []

    async def one(index: int, cookie: str) -> None:
        async with websockets.connect(
            url,
            additional_headers={"Cookie": cookie},
            origin=origin,
            max_size=None,
            ping_interval=None,
        ) as socket:
            ready.put(1)
            while True:
                try:
                    message = await asyncio.wait_for(socket.recv(), timeout=0.5)
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                at = time.monotonic()  # first thing: the measurement is the arrival
                wall = time.time()  # comparable with the audit event's timestamp
                for proposal_id in CARD_ID.findall(str(message)):
                    arrivals.append((proposal_id, index, at, wall))

    await asyncio.gather(*(one(index, cookie) for index, cookie in cookies))
    return arrivals


def _client_process(
    url: str, origin: str, cookies: list[tuple[int, str]], ready: Any, stop: Any, out: Any
) -> None:
    arrivals = asyncio.run(_client_loop(url, origin, cookies, ready, stop))
    out.put(arrivals)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[1] is the parent pid; fields[11] and fields[12] are utime and stime.
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- set-up (this process, through Django) ----------------------------------------------------


def _setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def _analyst_sessions(count: int) -> list[str]:
    """M analysts and a signed-in session each, written through the session engine: what the
    login view would leave behind, without M password hashes."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore

    from soc_console.roles import ANALYST

    group, _ = Group.objects.get_or_create(name=ANALYST)
    users = []
    for index in range(count):
        user = User(username=f"bench-analyst-{index:04d}")
        user.set_unusable_password()
        users.append(user)
    User.objects.bulk_create(users)
    users = list(User.objects.filter(username__startswith="bench-analyst-").order_by("username"))
    group.user_set.add(*users)
    cookies = []
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return cookies


def _agent_key() -> str:
    from agents.services import agent_register

    # Level 2 for isolate_host: every proposal is queued for an analyst and broadcast.
    # One agent sends the whole load: its circuit breaker is set beyond it.
    _, issued = agent_register(
        slug="bench-live",
        by="bench",
        grants={"isolate_host": 2},
        max_pending=10**9,
        max_proposals_per_minute=10**9,
    )
    return issued.raw


# --- the run ----------------------------------------------------------------------------------


async def _post(
    base: str, key: str, rate: float, duration: float
) -> tuple[dict[str, float], dict[str, float], int]:
    """Post at `rate` per second for `duration` seconds, without waiting for one post to
    finish before the next is due. Returns proposal id -> 201 time and -> send time."""
    import httpx

    got: dict[str, float] = {}
    sent: dict[str, float] = {}
    failures = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
    ) as http:

        async def one(index: int) -> None:
            nonlocal failures
            body = {
                "action": "isolate_host",
                "target": f"ws-{index % 10000:04d}.corp.example",
                "confidence": 0.7,
                "rationale": "Beaconing every 60 s to a domain registered yesterday.",
                "evidence": [{"kind": "alert", "ref": f"SIEM-{index}"}],
                "severity": "high",
            }
            started = time.monotonic()
            response = await http.post(
                "/api/v1/proposals/", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            at = time.monotonic()
            if response.status_code != 201:
                failures += 1
                return
            proposal_id = response.json()["id"]
            got[proposal_id] = at
            sent[proposal_id] = started

        tasks = []
        start = time.monotonic()
        total = int(rate * duration)
        for index in range(total):
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
    return got, sent, failures


async def _reference(members: int, stop: asyncio.Event, size: int, every: float) -> Series:
    """The raw channel layer under the same load: one group of `members` channels in this
    process; each probe is a group_send of `size` bytes, timed to each channel's receive."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    series = Series("channel layer group_send → receive (reference)")
    group = f"bench-reference-{uuid.uuid4().hex[:8]}"
    channels = [await layer.new_channel() for _ in range(members)]
    for channel in channels:
        await layer.group_add(group, channel)
    payload = "x" * size

    async def receive(channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            if message.get("stop"):
                return
            series.millis.append((time.monotonic() - message["at"]) * 1000)

    receivers = [asyncio.create_task(receive(channel)) for channel in channels]
    while not stop.is_set():
        await layer.group_send(group, {"type": "probe", "at": time.monotonic(), "html": payload})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
    await asyncio.sleep(1.0)  # the last probe's stragglers
    await layer.group_send(group, {"type": "probe", "stop": True})
    await asyncio.wait_for(asyncio.gather(*receivers), timeout=10)
    for channel in channels:
        await layer.group_discard(group, channel)
    return series


async def _measure(
    base: str, key: str, args: argparse.Namespace, card_bytes: int
) -> tuple[dict[str, float], dict[str, float], int, Series]:
    stop = asyncio.Event()
    reference = asyncio.create_task(_reference(args.clients, stop, card_bytes, 1 / args.probes))
    got, sent, failures = await _post(base, key, args.rate, args.duration)
    stop.set()
    return got, sent, failures, await reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="analyst websockets (M)")
    parser.add_argument("--rate", type=float, default=20.0, help="proposals per second (R)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of posting (D)")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="processes holding the websockets"
    )
    parser.add_argument("--probes", type=float, default=2.0, help="reference probes per second")
    parser.add_argument(
        "--workers", type=int, default=1, help="web worker processes (the Procfile runs 2)"
    )
    parser.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="turn off per-message deflate (on by default in uvicorn and so in the Procfile)",
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it afterwards")
    args = parser.parse_args()

    url = scratch_database(DATABASE)
    drop_database(DATABASE)  # a fresh one: the previous run's proposals would change the queue
    url = scratch_database(DATABASE)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "soc_console.settings",
        "DATABASE_URL": url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "CHANNEL_PREFIX": os.environ.get("CHANNEL_PREFIX", "bench-live"),
        "CELERY_QUEUE": "bench-live",
        "API_RATE_LIMIT_PER_MINUTE": "1000000",  # measuring the live path, not the throttle
        # Every card of the run on every console's page, so that each is broadcast to all.
        "QUEUE_PAGE_SIZE": os.environ.get("QUEUE_PAGE_SIZE", "1000"),
        "PUBLIC_URL": base,
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        env=env,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    _setup_django(env)
    cookies = _analyst_sessions(args.clients)
    key = _agent_key()

    server = start_server(
        env,
        port,
        workers=args.workers,
        extra=["--ws-per-message-deflate", "false"] if not args.deflate else [],
    )
    context = multiprocessing.get_context("spawn")
    ready, out, stop = context.Queue(), context.Queue(), context.Event()
    clients: list[Any] = []
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)

        numbered = list(enumerate(cookies))
        socket_url = f"ws://127.0.0.1:{port}/ws/queue/"
        share = max(1, args.client_processes)
        for part in range(share):
            process = context.Process(
                target=_client_process,
                args=(
                    socket_url,
                    base,
                    numbered[part::share],
                    ready,
                    stop,
                    out,
                ),
            )
            process.start()
            clients.append(process)
        for _ in range(args.clients):
            ready.get(timeout=60)
        # A warm-up proposal: the server compiles its templates and opens its connections
        # outside the measurement, and its card gives the reference probe's payload size.
        warm = httpx.post(
            f"{base}/api/v1/proposals/",
            json={
                "action": "isolate_host",
                "target": "warm-up.corp.example",
                "confidence": 0.7,
                "rationale": "Beaconing every 60 s to a domain registered yesterday.",
                "evidence": [{"kind": "alert", "ref": "SIEM-0"}],
                "severity": "high",
            },
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex},
            timeout=30,
        )
        assert warm.status_code == 201, warm.text
        time.sleep(1.0)  # every consumer has joined the group and drained the warm-up
        card_bytes = _card_size(warm.json()["id"])
        cpu_before, wall_before = _cpu_seconds(server.pid), time.monotonic()
        got, sent, failures, reference = asyncio.run(
            _measure(base, key, args, card_bytes=card_bytes)
        )
        server_cpu = _cpu_seconds(server.pid) - cpu_before
        server_wall = time.monotonic() - wall_before
        time.sleep(3.0)  # deliveries still in flight
        stop.set()
        arrivals: list[tuple[str, int, float, float]] = []
        for _ in clients:
            arrivals.extend(out.get(timeout=60))
        for process in clients:
            process.join(timeout=10)
    finally:
        stop.set()
        for process in clients:
            if process.is_alive():
                process.terminate()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    first: dict[tuple[str, int], float] = {}
    first_wall: dict[tuple[str, int], float] = {}
    for proposal_id, index, at, wall in arrivals:
        first.setdefault((proposal_id, index), at)
        first_wall.setdefault((proposal_id, index), wall)
    committed = _submitted_at(list(got))
    after_201 = Series("API 201 → card at each client")
    after_send = Series("API request sent → card at each client")
    after_commit = Series("commit (audit event time) → card at each client")
    missing = 0
    for proposal_id, at201 in got.items():
        for index in range(args.clients):
            arrived = first.get((proposal_id, index))
            if arrived is None:
                missing += 1
                continue
            after_201.millis.append((arrived - at201) * 1000)
            after_send.millis.append((arrived - sent[proposal_id]) * 1000)
            if proposal_id in committed:
                wall = first_wall[(proposal_id, index)]
                after_commit.millis.append((wall - committed[proposal_id]) * 1000)
    early = sum(1 for value in after_201.millis if value < 0)

    print(f"machine: {machine()}")
    print(
        f"clients {args.clients} in {args.client_processes} processes, rate {args.rate:g}/s, "
        f"duration {args.duration:g} s; uvicorn workers {args.workers} "
        f"(per-message deflate {'on' if args.deflate else 'off'}); Redis pub/sub channel layer; "
        f"broadcast of a new card {card_bytes} bytes"
    )
    print(
        f"proposals: {len(got)} accepted (201), {failures} refused; deliveries "
        f"{len(after_201.millis)} of {len(got) * args.clients} ({missing} missing)"
    )
    print(
        f"server CPU during the run: {server_cpu:.1f} s in {server_wall:.1f} s of wall time "
        f"({server_cpu / max(1, len(got)) * 1000:.0f} ms per accepted proposal)"
    )
    print(after_201.line())
    print(after_send.line())
    print(after_commit.line())
    print(reference.line())
    print(
        f"  {early} deliveries ({early / max(1, len(after_201.millis)):.1%}) arrived before "
        "their 201 (the broadcast goes out on commit, before the response)"
    )
    p99 = percentile(after_201.millis, 99) if after_201.millis else float("nan")
    live_p99 = percentile(after_commit.millis, 99) if after_commit.millis else float("nan")
    print(
        f"target: p99 ≤ 100 ms at 200 clients and 20/s: API 201 → card p99 {p99:.1f} ms; "
        f"the live path alone, commit → card, p99 {live_p99:.1f} ms"
    )
    if not args.keep_database:
        from django.db import connections

        connections.close_all()
        drop_database(DATABASE)


def _submitted_at(proposal_ids: list[str]) -> dict[str, float]:
    """When each proposal's submission was recorded, inside its transaction, just before the
    commit that sends the broadcast: the start of the live path proper."""
    from audit.models import AuditEvent

    events = AuditEvent.objects.filter(
        event_type="proposal.submitted", proposal_id__in=proposal_ids
    ).values_list("proposal_id", "at")
    return {str(proposal_id): at.timestamp() for proposal_id, at in events}


def _card_size(proposal_id: str) -> int:
    """The size of a real card broadcast, for the reference probe's payload."""
    from django.template.loader import render_to_string

    from approvals.live import counters_html
    from approvals.selectors import card_for, proposal_detail

    proposal = proposal_detail(proposal_id)
    html = render_to_string(
        "approvals/live.html", {"card": card_for(proposal), "proposal": proposal}
    )
    return len((html + counters_html()).encode())


if __name__ == "__main__":
    main()
