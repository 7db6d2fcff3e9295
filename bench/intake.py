"""Intake benchmark: agents posting proposals to a running server on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.intake

Two loads against the real endpoint (POST /api/v1/proposals/: key check, rate limit, strict
validation, idempotency, policy routing, audit chain append, live broadcast) and, in the same
run, against a bare DRF create of an equivalent row:

1. closed loop: N concurrent clients post as fast as they can for D seconds → throughput;
2. open loop: N agents, each on its own connections, send in turn at a fixed rate in all
   (default 50/s) for D seconds → p50/p99/max latency.

Both are repeated (--rounds, default 3) and printed round by round and pooled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import dataclass

import httpx

from bench.common import (
    drop_database,
    free_port,
    machine,
    manage,
    percentile,
    scratch_database,
    start_server,
    stop,
)

REAL = "/api/v1/proposals/"
BARE = "/bench/bare-create/"


def body(n: int) -> dict:
    return {
        "action": "block_ip",
        "target": f"198.18.{(n // 250) % 250}.{n % 250 + 1}",
        "params": {"duration_minutes": 60},
        "confidence": 0.8,
        "rationale": "Source of 14 failed SSH logins in 2 minutes; listed on two threat feeds.",
        "evidence": [{"kind": "alert", "ref": f"SIEM-{n}"}],
        "severity": "high",
    }


@dataclass
class Result:
    sent: int
    ok: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def line(self, label: str) -> str:
        lat = self.latencies_ms
        return (
            f"{label:<40} {self.ok:>6}/{self.sent:<6} ok  {self.throughput:8.1f} req/s  "
            f"p50 {percentile(lat, 50):6.1f} ms  p99 {percentile(lat, 99):6.1f} ms  "
            f"max {max(lat) if lat else float('nan'):6.1f} ms"
        )


async def post_one(client: httpx.AsyncClient, path: str, n: int, out: Result) -> None:
    started = time.perf_counter()
    try:
        response = await client.post(
            path, json=body(n), headers={"Idempotency-Key": uuid.uuid4().hex}
        )
    except httpx.TransportError:
        response = None  # a dropped connection counts as a failed call, not the end of the run
    out.latencies_ms.append((time.perf_counter() - started) * 1000)
    out.sent += 1
    if response is not None and response.status_code in (200, 201):
        out.ok += 1


async def closed_loop(base: str, key: str, path: str, clients: int, seconds: float) -> Result:
    out = Result(0, 0, 0.0, [])
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            await post_one(client, path, next(counter), out)

    limits = httpx.Limits(max_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as c:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(clients)))
        out.seconds = time.perf_counter() - started
    return out


async def open_loop(
    base: str, key: str, path: str, rate: float, seconds: float, clients: int
) -> Result:
    """`clients` agents, each with its own connections, sending in turn at `rate` in all."""
    out = Result(0, 0, 0.0, [])
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=8)
    agents = [
        httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30)
        for _ in range(clients)
    ]
    try:
        started = time.perf_counter()
        tasks = []
        total = int(rate * seconds)
        for n in range(total):
            # Send on schedule whether or not earlier requests have answered (open loop).
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            agent = agents[n % clients]
            tasks.append(asyncio.create_task(post_one(agent, path, 10**6 + n, out)))
        await asyncio.gather(*tasks)
        out.seconds = time.perf_counter() - started
    finally:
        for agent in agents:
            await agent.aclose()
    return out


def pooled(results: list[Result]) -> Result:
    """Several rounds as one: throughput over their summed time, percentiles over all calls."""
    return Result(
        sent=sum(r.sent for r in results),
        ok=sum(r.ok for r in results),
        seconds=sum(r.seconds for r in results),
        latencies_ms=[ms for r in results for ms in r.latencies_ms],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--clients", type=int, default=16, help="agents: closed-loop concurrency; open-loop senders"
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=50.0, help="open-loop proposals/s")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="repeat both loops, real and bare alternating; each round and the pooled figures "
        "are printed (one round swings with how the kernel spread the connections over the "
        "worker processes)",
    )
    parser.add_argument(
        "--loops", choices=["both", "closed", "open"], default="both", help="which loads to run"
    )
    parser.add_argument(
        "--analyze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ANALYZE the database before each open loop, as autovacuum would have by then "
        "(PostgreSQL analyses a table once 50 rows and a tenth of it have changed); "
        "--no-analyze measures plans chosen without statistics",
    )
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    db_name = "soc_bench_intake"
    drop_database(db_name)
    env = {
        **os.environ,
        "DATABASE_URL": scratch_database(db_name),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
        "CHANNEL_PREFIX": "soc-bench",
        "CELERY_QUEUE": "soc-bench-intake",
        "BENCH_URLS": "1",
        "API_RATE_LIMIT_PER_MINUTE": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    manage(env, "migrate", "--noinput")
    # One agent sends the whole load: its circuit breaker is set beyond it (the check still
    # runs on every proposal, and its cost is part of what is measured).
    created = manage(
        env,
        "create_agent",
        "bench-agent",
        "--grant",
        "block_ip=2",
        "--max-pending",
        str(10**9),
        "--max-per-minute",
        str(10**9),
    )
    key = created.strip().splitlines()[-1]
    port = free_port()
    server = start_server(env, port, workers=args.workers)
    base = f"http://127.0.0.1:{port}"
    closed: dict[str, list[Result]] = {REAL: [], BARE: []}
    opened: dict[str, list[Result]] = {REAL: [], BARE: []}
    try:
        # Warm both paths (imports, connections) before measuring.
        asyncio.run(closed_loop(base, key, REAL, 4, 2))
        asyncio.run(closed_loop(base, key, BARE, 4, 2))
        for _ in range(args.rounds):
            for path in (REAL, BARE) if args.loops != "open" else ():
                closed[path].append(
                    asyncio.run(closed_loop(base, key, path, args.clients, args.seconds))
                )
            if args.analyze:
                analyze(env["DATABASE_URL"])
            for path in (REAL, BARE) if args.loops != "closed" else ():
                opened[path].append(
                    asyncio.run(open_loop(base, key, path, args.rate, args.seconds, args.clients))
                )
    finally:
        stop(server)
        import redis

        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        if not args.keep_db:
            drop_database(db_name)
    print(f"machine: {machine()}; server: uvicorn, {args.workers} worker processes; PostgreSQL")
    if closed[REAL]:
        print_closed(closed, args)
    if opened[REAL]:
        print_open(opened, args)


def analyze(database_url: str) -> None:
    """Statistics for the planner, as autovacuum keeps them (a machine may run without it)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def print_closed(closed: dict[str, list[Result]], args: argparse.Namespace) -> None:
    print(f"closed loop, {args.clients} concurrent clients, {args.seconds:.0f} s each:")
    for n, (real, bare) in enumerate(zip(closed[REAL], closed[BARE], strict=True), start=1):
        print(real.line(f"  round {n}: proposals API"))
        print(bare.line(f"  round {n}: bare DRF create"))
        print(f"  round {n}: ratio real/bare throughput: {real.throughput / bare.throughput:.2f}")
    real, bare = pooled(closed[REAL]), pooled(closed[BARE])
    print(real.line("  all rounds: proposals API"))
    print(bare.line("  all rounds: bare DRF create"))
    print(f"  all rounds: ratio real/bare throughput: {real.throughput / bare.throughput:.2f}")


def print_open(opened: dict[str, list[Result]], args: argparse.Namespace) -> None:
    print(f"open loop at {args.rate:.0f}/s from {args.clients} agents, {args.seconds:.0f} s each:")
    for n, (real, bare) in enumerate(zip(opened[REAL], opened[BARE], strict=True), start=1):
        print(real.line(f"  round {n}: proposals API"))
        print(bare.line(f"  round {n}: bare DRF create"))
    print(pooled(opened[REAL]).line("  all rounds: proposals API"))
    print(pooled(opened[BARE]).line("  all rounds: bare DRF create"))


if __name__ == "__main__":
    main()
