"""Real processes for the fault tests and the benchmark: a private Redis, Celery workers, beat.

Everything started here runs in its own process group, so that stopping it also stops the
children it forked (a prefork worker's pool), and is registered for clean-up at interpreter
exit as a last resort: a failing test must never leave a worker consuming someone's queue or
a redis-server holding a port.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

PROJECT_DIR = Path(__file__).resolve().parent.parent
_LIVE: set[ManagedProcess] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = ""
) -> object:
    """Poll until condition() is truthy and return its value; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what or condition}")
        time.sleep(interval)


@dataclass(eq=False)
class ManagedProcess:
    """One child process with its own process group and a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """kill -9 the whole group: the process gets no chance to finish or ack anything."""
        self._signal_group(signal.SIGKILL)
        self._reap(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask politely (SIGTERM, a Celery warm shutdown), then kill what is left."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Children of a stopped parent may linger in the group; never leave them behind.
        self._signal_group(signal.SIGKILL)
        self._reap(timeout=10)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def _reap(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        _LIVE.discard(self)


def _spawn(name: str, argv: list[str], *, env: Mapping[str, str], log_dir: Path) -> ManagedProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            argv,
            cwd=PROJECT_DIR,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, see ManagedProcess.kill
        )
    process = ManagedProcess(name, popen, log_path)
    _LIVE.add(process)
    return process


@atexit.register
def _stop_everything() -> None:
    for process in list(_LIVE):
        process.stop(timeout=2)


def _fail_with_log(process: ManagedProcess, what: str) -> None:
    process.stop(timeout=2)
    tail = "\n".join(process.log().splitlines()[-40:])
    raise RuntimeError(f"{what}; last lines of {process.name}'s log:\n{tail}")


# --- Redis ----------------------------------------------------------------------------------


@dataclass(eq=False)
class PrivateRedis:
    """A redis-server of our own on a spare port, keeping nothing on disk.

    The shared Redis other people's consoles and tests use is never stopped or flushed; this one
    can be restarted and flushed at will.
    """

    port: int
    log_dir: Path
    process: ManagedProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> PrivateRedis:
        argv = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_dir),
        ]
        self.process = _spawn("redis", argv, env=os.environ, log_dir=self.log_dir)
        try:
            wait_for(self.answers, timeout=10, what=f"redis-server on port {self.port}")
        except TimeoutError:
            _fail_with_log(self.process, f"redis-server did not start on port {self.port}")
        return self

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=5)
            self.process = None

    def restart(self) -> None:
        """A crash and restart without persistence: every queued message is gone."""
        if self.process is not None:
            self.process.kill()
        self.process = None
        self.start()

    def flushall(self) -> None:
        self.client().flushall()


def start_redis(log_dir: Path | None = None) -> PrivateRedis:
    return PrivateRedis(free_port(), log_dir or Path(tempfile.mkdtemp(prefix="redis-"))).start()


# --- Celery ---------------------------------------------------------------------------------


@dataclass
class CeleryEnvironment:
    """What a worker or beat process needs to share the test's database and private broker."""

    database_url: str
    redis_url: str
    queue: str
    channel_prefix: str = "soc-fault"
    extra: dict[str, str] = field(default_factory=dict)

    def build(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        # The child must not inherit the parent's test settings or its pytest plumbing.
        for name in ("DJANGO_SETTINGS_MODULE", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"):
            env.pop(name, None)
        env.update(
            DJANGO_SETTINGS_MODULE="soc_console.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            CELERY_BROKER_URL=self.redis_url,
            CELERY_QUEUE=self.queue,
            CHANNEL_PREFIX=self.channel_prefix,
            EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(PROJECT_DIR),
            # As in production: each worker process keeps a small pool (this test process
            # runs without one).
            DATABASE_POOL_MAX="4",
        )
        env.update(self.extra)
        env.update(overrides)
        return env


def database_url() -> str:
    """The PostgreSQL URL of the database this test runs on, for the processes it starts."""
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{host}:{port}/{db['NAME']}"


def shared_environment() -> CeleryEnvironment:
    """Processes on the test database with the test settings' Redis, queue and channel prefix:
    they share what the live servers of the test use."""
    from django.conf import settings

    return CeleryEnvironment(
        database_url=database_url(),
        redis_url=settings.REDIS_URL,
        queue=settings.CELERY_TASK_DEFAULT_QUEUE,
        channel_prefix=settings.CHANNEL_PREFIX,
    )


def _celery() -> str:
    return str(Path(sys.executable).with_name("celery"))


def start_worker(
    environment: CeleryEnvironment,
    *,
    log_dir: Path,
    pool: str = "prefork",
    concurrency: int = 1,
    include: list[str] | None = None,
    ready_timeout: float = 30.0,
    queue: str | None = None,
    name: str | None = None,
    **env: str,
) -> ManagedProcess:
    """Start `celery -A soc_console worker` on the environment's queue (or `queue`) and wait
    until ready; `name` is its node name (a fresh one by default)."""
    name = name or f"worker-{uuid.uuid4().hex[:8]}"
    argv = [
        _celery(),
        "-A",
        "soc_console",
        "worker",
        "--loglevel=INFO",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-Q",
        queue or environment.queue,
        "-n",
        f"{name}@%h",
        # Nothing to learn from other workers here, and each of these costs start-up seconds.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if include:
        argv += ["--include", ",".join(include)]
    process = _spawn(name, argv, env=environment.build(**env), log_dir=log_dir)
    try:
        wait_for(
            lambda: not process.alive() or " ready." in process.log(),
            timeout=ready_timeout,
            interval=0.1,
            what=f"{name} to be ready",
        )
    except TimeoutError:
        _fail_with_log(process, f"{name} was not ready within {ready_timeout} s")
    if not process.alive():
        _fail_with_log(process, f"{name} exited during start-up")
    return process


def start_beat(environment: CeleryEnvironment, *, log_dir: Path, **env: str) -> ManagedProcess:
    """Start `celery beat` with a throw-away schedule file and wait until it has started."""
    name = f"beat-{uuid.uuid4().hex[:8]}"
    schedule = log_dir / f"{name}-schedule"
    argv = [_celery(), "-A", "soc_console", "beat", "--loglevel=INFO", f"--schedule={schedule}"]
    process = _spawn(name, argv, env=environment.build(**env), log_dir=log_dir)
    try:
        wait_for(
            lambda: not process.alive() or "beat: Starting" in process.log(),
            timeout=30,
            interval=0.1,
            what=f"{name} to start",
        )
    except TimeoutError:
        _fail_with_log(process, f"{name} did not start")
    if not process.alive():
        _fail_with_log(process, f"{name} exited during start-up")
    return process


def start_forwarder(environment: CeleryEnvironment, *, log_dir: Path, **env: str) -> ManagedProcess:
    """Start the Procfile's `forward` process (manage.py forward_audit) and wait until it
    forwards."""
    name = f"forward-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "manage.py", "forward_audit"]
    process = _spawn(name, argv, env=environment.build(**env), log_dir=log_dir)
    try:
        wait_for(
            lambda: not process.alive() or "forwarding the audit trail to" in process.log(),
            timeout=30,
            interval=0.1,
            what=f"{name} to start",
        )
    except TimeoutError:
        _fail_with_log(process, f"{name} did not start")
    if not process.alive():
        _fail_with_log(process, f"{name} exited during start-up")
    return process


# --- Web server -----------------------------------------------------------------------------


def start_web(
    environment: CeleryEnvironment, *, log_dir: Path, workers: int = 1, **env: str
) -> tuple[ManagedProcess, str]:
    """Start the web server as the Procfile runs it (soc_console.serve) on a spare port, wait
    until it answers, and return it with its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "soc_console.serve", "--port", str(port)]
    argv += ["--workers", str(workers), "--no-access-log"]
    process = _spawn(
        f"web-{uuid.uuid4().hex[:8]}",
        argv,
        env=environment.build(PUBLIC_URL=url, **env),
        log_dir=log_dir,
    )

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /api/v1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return sock.recv(16).startswith(b"HTTP/1.1")
        except OSError:
            return False

    try:
        wait_for(
            lambda: not process.alive() or answers(), timeout=30, what=f"the web server on {port}"
        )
    except TimeoutError:
        _fail_with_log(process, "the web server did not answer within 30 s")
    if not process.alive():
        _fail_with_log(process, "the web server exited during start-up")
    return process, url


@contextlib.contextmanager
def stopping(*processes: ManagedProcess) -> Iterator[None]:
    """Stop the given processes however the block ends."""
    try:
        yield
    finally:
        for process in processes:
            process.stop()
