"""The deployment files: compose.yaml is valid, and the Procfile, compose.yaml, the Dockerfile and
the README's Deployment section run the same commands."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# Procfile processes that only `make run` has: the simulated agents are a demo.
LOCAL_ONLY = {"agents"}
SECRETS = {
    "SECRET_KEY": "k" * 50,
    "API_KEY_PEPPER": "p" * 50,
    "AUDIT_KEY": "a" * 50,
    "POSTGRES_PASSWORD": "pw",
    "APP_DB_PASSWORD": "app-pw",
}


def _compose_binary() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    reason = "docker-compose is not installed (apt-get install docker-compose; .ci/run does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment and a directory without .env: only what the test gives counts.
    return subprocess.run(
        [*_compose_binary(), "--project-directory", str(ROOT), "-f", "compose.yaml", "config"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_compose_file_is_valid_and_needs_its_secrets() -> None:
    done = _compose_config(SECRETS)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["environment"]["SECRET_KEY"] == SECRETS["SECRET_KEY"]
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # migrate runs as the owner; everything else as the runtime role, which cannot rewrite the
    # audit log.
    migrate_env = services["migrate"]["environment"]
    assert migrate_env["MIGRATION_DATABASE_URL"] == "postgres://soc:pw@postgres:5432/soc"
    assert migrate_env["DATABASE_URL"] == "postgres://soc_app:app-pw@postgres:5432/soc"
    for name in ("web", "worker", "beat"):
        assert "MIGRATION_DATABASE_URL" not in services[name]["environment"]
        assert services[name]["environment"]["DATABASE_URL"] == migrate_env["DATABASE_URL"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in SECRETS:
        missing = _compose_config({k: v for k, v in SECRETS.items() if k != name})
        assert missing.returncode != 0
        assert f"set {name} in .env" in missing.stderr


def _procfile() -> dict[str, list[str]]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() and not line.lstrip().startswith("#"):
            processes[name.strip()] = command.strip()
    return {name: shlex.split(command) for name, command in processes.items()}


def _normalised(argv: list[str]) -> list[str]:
    """The process's own command: from the program on (a local wrapper that loads secrets is
    not part of it), `${VAR:-default}` as its default, and without the address to bind
    (127.0.0.1 for `make run`, every interface in a container)."""
    start = next(n for n, token in enumerate(argv) if token.startswith(".venv/bin/"))
    argv = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", token) for token in argv[start:]]
    while "--host" in argv:
        at = argv.index("--host")
        del argv[at : at + 2]
    return argv


def _compose_commands() -> dict[str, list[str]]:
    config = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return {name: service.get("command") for name, service in config["services"].items()}


def _readme_commands() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Deployment\n", 1)[1].split("\n## ", 1)[0]
    return {
        name: shlex.split(command)
        for name, command in re.findall(r"^\| `(\w+)` \| `([^`]+)`", section, re.MULTILINE)
    }


def test_procfile_compose_dockerfile_and_readme_run_the_same_commands() -> None:
    procfile = _procfile()
    compose = _compose_commands()
    readme = _readme_commands()
    deployed = set(procfile) - LOCAL_ONLY
    assert deployed >= {"web", "worker", "beat"}
    for name in deployed:
        assert name in compose, f"the Procfile runs {name}; compose.yaml has no such service"
        assert _normalised(compose[name]) == _normalised(procfile[name]), name
        assert readme.get(name) == compose[name], f"README's {name} differs from compose.yaml"
    # Every long-running service of compose.yaml is a Procfile process too; migrate runs once.
    assert set(compose) - {"postgres", "redis", "migrate"} == deployed
    assert compose["migrate"] == readme["migrate"]
    assert compose["migrate"][-3:] == ["manage.py", "migrate", "--noinput"]
    # The image's default command is the web server's.
    dockerfile = (ROOT / "Dockerfile").read_text()
    default = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    assert default == compose["web"]
    # The web server listens on every interface in a container, on the port published.
    web = compose["web"]
    assert web[web.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - in a container, on purpose
    assert web[web.index("--port") + 1] == "8000"
