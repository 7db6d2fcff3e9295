"""End-to-end: a live server (soc_console.serve in a subprocess, the real ASGI app and Redis
channel layer) against the pytest test database, driven by Debian's Chromium through Playwright.

The tests are `django_db(transaction=True)`: the server is another process and only sees
committed rows, and the tables are flushed between tests.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import global_settings, settings
from django.contrib.auth.models import User
from django.db import connection

from tests import processes
from tests.oidc_provider import harness

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
PASSWORD = "pass-for-tests"  # tests.factories.user's default


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_static_root: Path | None = None


def _collected_static() -> Path:
    """`collectstatic`, once per test session, into a directory of its own: the live servers
    serve the hashed, compressed files as a deployment does."""
    global _static_root
    if _static_root is None:
        root = Path(tempfile.mkdtemp(prefix="soc-static-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=settings.BASE_DIR,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "soc_console.settings",
                "STATIC_ROOT": str(root),
            },
            check=True,
        )
        _static_root = root
    return _static_root


@contextlib.contextmanager
def _serve(django_db_blocker: Any, log_name: str, **extra_env: str) -> Iterator[str]:
    """uvicorn serving soc_console.asgi on a free port, on the test database."""
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
        db = connection.settings_dict
    port = _free_port()
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "soc_console.settings",
        "DATABASE_URL": f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{name}",
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": settings.CHANNEL_PREFIX,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "STATIC_ROOT": str(_collected_static()),
        **extra_env,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{log_name}.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "soc_console.serve",  # as the Procfile runs it: two processes
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--no-access-log",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                pytest.fail(f"the live server exited: see {log_path}")
            try:
                if httpx.get(f"{url}/accounts/login/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the live server did not start in 30 s: see {log_path}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(autouse=True)
def _production_password_hashes(settings: Any) -> None:
    # The server runs the production settings, which do not read the suite's MD5 hashes.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS


@pytest.fixture(scope="session")
def live_server_url(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """The console with the test settings: approvals run at once (no undo window)."""
    with _serve(django_db_blocker, "live-server") as url:
        yield url


UNDO_SECONDS = 3
# Signing in checks the password with the production hasher (about 0.7 s of CPU): with the rest
# of the suite busy on both cores it has taken more than the 5 s every other step is given.
# Its speed is not what these tests are about.
SIGN_IN_MS = 20000


def sign_in(page: Any, url: str, username: str, *, live: bool = True) -> None:
    """Through the login form, to the queue; with `live`, until its websocket is up."""
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]", timeout=SIGN_IN_MS)
    page.wait_for_url(f"{url}/", timeout=SIGN_IN_MS)
    if live:
        page.wait_for_selector("#live-status.ok", timeout=SIGN_IN_MS)


@pytest.fixture(scope="session")
def undo_server_url(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """A second console whose approvals wait UNDO_SECONDS before they may run."""
    with _serve(
        django_db_blocker, "live-server-undo", APPROVAL_UNDO_SECONDS=str(UNDO_SECONDS)
    ) as url:
        yield url


# The provider's groups that give console roles in the single sign-on tests.
SSO_ROLE_MAP = "soc-analysts=analyst,soc-leads=senior_analyst,soc-managers=manager"


@pytest.fixture(scope="module")
def sso(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[harness.Provider, str]]:
    """An OpenID Connect provider (tests/oidc_provider) and a console that signs in through it
    only (LOCAL_LOGIN off): (provider, console URL)."""
    with (
        # The provider starts while the console does.
        harness.running(tmp_path_factory.mktemp("oidc-provider"), wait=False) as provider,
        _serve(
            django_db_blocker,
            "live-server-sso",
            LOCAL_LOGIN="off",
            **provider.console_env(SSO_ROLE_MAP),
        ) as url,
    ):
        provider.wait_ready()
        provider.register_client(f"{url}/oidc/callback/")
        yield provider, url


@pytest.fixture
def worker(transactional_db: None, tmp_path: Path) -> Iterator[processes.ManagedProcess]:
    """A real Celery worker on the test database and the live servers' broker and queue."""
    environment = processes.shared_environment()
    process = processes.start_worker(environment, log_dir=tmp_path, concurrency=1)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium; missing it skips locally and fails in CI.

    Module-scoped: Playwright's sync API keeps an asyncio loop on the main thread while it
    runs, and Django refuses ORM calls "from an async context" then. These tests do ORM work
    only between browser steps, never concurrently with them, so the check is switched off
    while the browser is up, and the loop is gone before other modules' tests run.
    """
    executable = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    in_ci = os.environ.get("CI", "").lower() == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        if in_ci:
            pytest.fail(f"playwright is not installed: {exc}")
        pytest.skip(f"playwright is not installed: {exc}")
    if not Path(executable).exists():
        reason = (
            f"Chromium not found at {executable}: apt-get install chromium, or set CHROMIUM_PATH"
        )
        if in_ci:
            pytest.fail(reason)
        pytest.skip(reason)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _keep_screenshots(request: pytest.FixtureRequest, pages: list[Any]) -> None:
    """On failure, every page the test opened is kept as a screenshot in test-artifacts/."""
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    for index, page in enumerate(pages):
        try:
            page.screenshot(path=str(ARTIFACTS / f"{stem}-{index}.png"), full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            print(f"no screenshot of page {index}: {exc}")


@pytest.fixture
def console(
    request: pytest.FixtureRequest, browser: Any, live_server_url: str
) -> Iterator[Callable[..., Any]]:
    """Sign a user in through the login form in a fresh browser context (1280×800) and
    return the queue page once its websocket is live (on `server`, live_server_url unless
    given)."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def open_console(user: User, server: str | None = None) -> Any:
        url = server or live_server_url
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(5000)
        pages.append(page)
        sign_in(page, url, user.username)
        # Set once; a reload would lose it, so tests can prove an update came without one.
        page.evaluate("window.__sameDocument = true")
        return page

    yield open_console
    _keep_screenshots(request, pages)
    for context in contexts:
        context.close()
