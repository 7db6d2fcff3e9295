"""The web server: uvicorn worker processes, each with a listening socket of its own.

    python -m soc_console.serve --port 8000 --workers 2

uvicorn's own --workers shares one listening socket among the processes, and a worker's event
loop accepts every connection waiting when it wakes: agents that connect in a burst all land on
one process while the other idles, and that one process's queue sets everyone's latency. Here
each worker listens on its own socket bound with SO_REUSEPORT, and the kernel spreads new
connections over the sockets. The sockets are bound here, before any worker starts, so a port
in use is an error at once; a worker that dies is started again on the same socket.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from typing import Any

APP = "soc_console.asgi:application"
STARTUP_SECONDS = 10


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _check_free(host: str, port: int) -> None:
    # SO_REUSEPORT would let this server share the port with another one already on it (a
    # second `make run`, say) and take half its connections. A plain bind refuses a port that
    # anything listens on.
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(sock: socket.socket, options: dict[str, Any]) -> None:
    import django

    # Logging as the settings say (JSON lines with LOG_FORMAT=json) before uvicorn loads its
    # protocols, which may warn.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soc_console.settings")
    django.setup(set_prefix=False)
    import uvicorn
    from django.urls import get_resolver

    from soc_console.celery import freeze_start_up_objects

    config = uvicorn.Config(APP, **options)
    config.load()  # the application, before freezing what it loaded
    get_resolver().url_patterns  # noqa: B018 - the URLconf now, not on the first request
    freeze_start_up_objects()
    uvicorn.Server(config).run(sockets=[sock])


def _check_settings() -> None:
    """Read the settings here, once, before any worker starts: a missing secret or a malformed
    value stops the server with its one line instead of every worker dying of it in turn."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soc_console.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - the first read imports the settings module
    except ImproperlyConfigured as exc:
        sys.exit(f"cannot start: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--ws-per-message-deflate", choices=["true", "false"], default="true")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    options = {
        # With JSON logs uvicorn's own lines go through the settings' handler like the rest.
        **({"log_config": None} if os.environ.get("LOG_FORMAT") == "json" else {}),
        "log_level": args.log_level,
        "access_log": not args.no_access_log,
        "ws": "websockets-sansio",
        "ws_per_message_deflate": args.ws_per_message_deflate == "true",
    }

    _check_settings()
    try:
        _check_free(args.host, args.port)
        sockets = [_listening_socket(args.host, args.port) for _ in range(args.workers)]
    except OSError as exc:
        sys.exit(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    spawn = multiprocessing.get_context("spawn")
    started_at: dict[int, float] = {}
    stopping = False

    def shut_down(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    # Before any worker exists, so that no signal can leave one behind.
    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)

    def start(sock: socket.socket) -> BaseProcess:
        process = spawn.Process(target=_worker, args=(sock, options), name="soc-web")
        process.start()
        started_at[process.pid] = time.monotonic()
        return process

    workers: list[BaseProcess] = []
    failed = False
    try:
        workers = [start(sock) for sock in sockets]
        print(f"serving on http://{args.host}:{args.port} with {args.workers} workers", flush=True)
        quick_failures = 0
        while not stopping:
            time.sleep(0.5)
            now = time.monotonic()
            for n, process in enumerate(workers):
                if stopping:
                    break
                if process.is_alive():
                    if now - started_at[process.pid] > STARTUP_SECONDS:
                        quick_failures = 0  # workers do start: earlier deaths were not that
                    continue
                # A worker that dies right after starting (a settings error, say) would die
                # again: after three in a row, stop instead of restarting it forever.
                lived = now - started_at.pop(process.pid)
                quick_failures = quick_failures + 1 if lived < STARTUP_SECONDS else 0
                if quick_failures >= 3:
                    print("workers keep exiting at start-up; see the errors above", flush=True)
                    stopping = failed = True
                    break
                print(
                    f"worker {process.pid} exited ({process.exitcode}); starting another",
                    flush=True,
                )
                workers[n] = start(sockets[n])
    finally:
        for sock in sockets:
            sock.close()  # this process's copies; each worker closes its own as it stops
        for process in workers:
            process.terminate()  # uvicorn finishes the requests in flight, then exits
        deadline = time.monotonic() + 10
        for process in workers:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                process.kill()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
