"""Production defaults: no start without the deployment's own secrets, `make run` with
generated ones, and the HTTPS switches."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

PROJECT = Path(settings.BASE_DIR)
PYTHON = sys.executable
CELERY = str(Path(sys.executable).with_name("celery"))

# Every way the console is started: management commands, the web server, the worker, beat.
COMMANDS = {
    "manage.py check": [PYTHON, "manage.py", "check"],
    "manage.py help": [PYTHON, "manage.py", "help"],
    "web server": [PYTHON, "-m", "soc_console.serve", "--port", "1", "--workers", "1"],
    "celery worker": [CELERY, "-A", "soc_console", "worker", "--pool=solo"],
    "celery beat": [CELERY, "-A", "soc_console", "beat"],
}


def _environment(**changes: str | None) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "soc_console.settings"}
    for name in ("SECRET_KEY", "API_KEY_PEPPER", "AUDIT_KEY", "DEBUG", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path = PROJECT) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_to_start_without_secret_key(command: str) -> None:
    done = _run(COMMANDS[command], _environment())
    assert done.returncode != 0
    output = (done.stdout + done.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith("SECRET_KEY and API_KEY_PEPPER must be set")
    assert "Traceback" not in done.stderr


def test_the_published_development_key_is_refused_with_debug_off() -> None:
    done = _run(
        COMMANDS["manage.py check"],
        _environment(SECRET_KEY=settings.DEV_SECRET_KEY, API_KEY_PEPPER="a-pepper-of-our-own"),
    )
    assert done.returncode != 0
    assert done.stderr.strip().startswith("SECRET_KEY must be set")


def test_the_api_key_pepper_never_defaults_to_the_secret_key() -> None:
    done = _run(COMMANDS["manage.py check"], _environment(SECRET_KEY="a-secret-key-of-our-own"))
    assert done.returncode != 0
    assert done.stderr.strip().startswith("API_KEY_PEPPER must be set")


def test_the_console_hashes_passwords_with_pbkdf2_and_reads_no_md5_hash() -> None:
    # The suite hashes its users' passwords with MD5 for speed (tests/settings.py); the
    # console's own settings must neither make nor accept such a hash.
    done = _run(
        [
            PYTHON,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings; print(*settings.PASSWORD_HASHERS)",
        ],
        _environment(
            SECRET_KEY="a-secret-key-of-our-own",
            API_KEY_PEPPER="a-pepper-of-our-own",
            AUDIT_KEY="an-audit-key-of-our-own-" + "0" * 32,
        ),
    )
    assert done.returncode == 0, done.stderr
    hashers = done.stdout.split()
    assert hashers[0] == "django.contrib.auth.hashers.PBKDF2PasswordHasher"
    assert not [name for name in hashers if "MD5" in name.upper()]


def test_debug_runs_with_the_development_keys_and_a_pepper_apart_from_the_key() -> None:
    done = _run(
        [
            PYTHON,
            "-c",
            "from django.conf import settings as s; print(s.SECRET_KEY == s.API_KEY_PEPPER)",
        ],
        _environment(DEBUG="1"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _checkout_copy(tmp_path: Path) -> Path:
    """bin/with-secrets keeps its file beside itself: a copy in a scratch directory."""
    (tmp_path / "bin").mkdir()
    shutil.copy2(PROJECT / "bin" / "with-secrets", tmp_path / "bin" / "with-secrets")
    return tmp_path / "bin" / "with-secrets"


def _secrets_seen(script: Path, env: dict[str, str]) -> list[str]:
    done = _run(
        [
            str(script),
            PYTHON,
            "-c",
            "import os; print(*(os.environ.get(n, '') for n in "
            "('SECRET_KEY', 'API_KEY_PEPPER', 'AUDIT_KEY')))",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_make_run_generates_its_secrets_once_readable_by_its_user_only(tmp_path: Path) -> None:
    script = _checkout_copy(tmp_path)
    first = _secrets_seen(script, _environment())
    assert len(first) == 3 and len(set(first)) == 3
    assert all(len(value) == 64 for value in first)
    secrets_file = tmp_path / ".run" / "secrets.env"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert _secrets_seen(script, _environment()) == first  # kept, not regenerated

    # A deployment's own value wins over the file, which stays as it was.
    own = _secrets_seen(script, _environment(SECRET_KEY="the-deployments-own"))
    assert own == ["the-deployments-own", *first[1:]]
    assert "the-deployments-own" not in secrets_file.read_text()

    # A file from before AUDIT_KEY existed gets the missing one added, the rest kept.
    secrets_file.write_text(f"SECRET_KEY={first[0]}\nAPI_KEY_PEPPER={first[1]}")
    again = _secrets_seen(script, _environment())
    assert again[:2] == first[:2] and len(again[2]) == 64


def test_make_run_anchors_the_audit_chain_beside_its_secrets(tmp_path: Path) -> None:
    script = _checkout_copy(tmp_path)
    show = [str(script), PYTHON, "-c", "import os; print(os.environ['AUDIT_ANCHOR_URL'])"]
    done = _run(show, _environment(AUDIT_ANCHOR_URL=None))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (tmp_path / ".run" / "audit-anchor.jsonl").as_uri()
    own = _run(show, _environment(AUDIT_ANCHOR_URL="syslog+tcp://127.0.0.1:6514"))
    assert own.stdout.strip() == "syslog+tcp://127.0.0.1:6514"


def test_make_run_commands_start_with_no_set_up(tmp_path: Path) -> None:
    script = _checkout_copy(tmp_path)
    done = _run([str(script), PYTHON, str(PROJECT / "manage.py"), "check"], _environment())
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_the_makefile_and_procfile_start_everything_through_the_secrets() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    assert "$(SECRETS) $(BIN)/python manage.py migrate" in makefile
    assert "$(SECRETS) $(BIN)/python manage.py seed_demo" in makefile
    for line in (PROJECT / "Procfile").read_text().splitlines():
        assert "bin/with-secrets .venv/bin/" in line, line


# --- HTTPS switches ------------------------------------------------------------------------

SWITCHES = (
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
)


def _switches(**env: str) -> list[str]:
    done = _run(
        [
            PYTHON,
            "-c",
            "from django.conf import settings as s; "
            f"print(*(repr(getattr(s, n, None)) for n in {SWITCHES!r}), sep='|')",
        ],
        _environment(SECRET_KEY="k" * 50, API_KEY_PEPPER="p" * 40, AUDIT_KEY="a" * 40, **env),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split("|")


def test_https_switches_are_off_by_default_for_local_http() -> None:
    assert _switches() == ["False", "False", "0", "False", "False", "False", "None"]


def test_https_switches_turn_on_from_the_environment() -> None:
    assert _switches(
        SECURE_COOKIES="1",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
        SECURE_SSL_REDIRECT="1",
        TRUST_PROXY_SSL_HEADER="1",
    ) == [
        "True",
        "True",
        "31536000",
        "True",
        "True",
        "True",
        "('HTTP_X_FORWARDED_PROTO', 'https')",
    ]


def test_hsts_options_without_its_duration_are_refused() -> None:
    done = _run(
        COMMANDS["manage.py check"],
        _environment(
            SECRET_KEY="k" * 50,
            API_KEY_PEPPER="p" * 40,
            AUDIT_KEY="a" * 40,
            SECURE_HSTS_PRELOAD="1",
        ),
    )
    assert done.returncode != 0
    assert "SECURE_HSTS_INCLUDE_SUBDOMAINS and SECURE_HSTS_PRELOAD need SECURE_HSTS_SECONDS" in (
        done.stderr
    )


@pytest.mark.django_db
def test_behind_a_trusted_proxy_https_requests_get_hsts_and_secure_cookies(settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_SSL_REDIRECT = True
    settings.CSRF_COOKIE_SECURE = True
    client = Client()
    plain = client.get("/accounts/login/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    assert client.get("/healthz").status_code != 301  # probed over http from inside
    secure = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=3600"
    assert secure.cookies[settings.CSRF_COOKIE_NAME]["secure"] is True


@pytest.mark.django_db
def test_every_page_carries_a_content_security_policy_without_inline_or_eval() -> None:
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
    )
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in policy
