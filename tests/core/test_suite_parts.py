"""`make test` runs the suite in two parts at once (bin/test-parts): every test in exactly one
of them, and the two parts on apart databases, Redis databases, channels and queues."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings

PROJECT = Path(settings.BASE_DIR)
# Directories with tests of every kind: browser and fault tests, the schemathesis run, tests
# marked `postgres`, and plain ones.
SAMPLE = ["tests/browser", "tests/fault", "tests/contract", "tests/execution"]
NODE = re.compile(r"^tests/\S+::\S+", re.MULTILINE)
PART = re.compile(r"^(timed part|the rest): -m '(.*)'; (.*)$", re.MULTILINE)


def _collect(argv: list[str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/soc_parts",
        "REDIS_URL": "redis://127.0.0.1:6379/7",
        "CHANNEL_PREFIX": "soc-parts",
        "CELERY_QUEUE": "soc-parts",
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run(
        argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_test_runs_in_exactly_one_part_and_a_marker_narrows_both() -> None:
    marks = "not postgres"
    options = ["--collect-only", "-q", "-p", "no:randomly", "-m", marks, *SAMPLE]
    whole = _collect([sys.executable, "-m", "pytest", *options])
    parts = _collect(["bin/test-parts", *options])
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert parts.returncode == 0, parts.stdout + parts.stderr

    timed_out, rest_out = parts.stdout.split("--- the rest of the suite")
    timed = NODE.findall(timed_out)
    rest = NODE.findall(rest_out)
    everything = NODE.findall(whole.stdout)
    assert len(timed) == len(set(timed)) and len(rest) == len(set(rest))
    assert not set(timed) & set(rest)
    assert sorted(timed + rest) == sorted(everything)
    assert any(node.startswith("tests/contract/test_schemathesis.py") for node in timed)
    assert not [node for node in everything if "test_topology" in node]  # marked postgres
    assert any(node.startswith("tests/fault/") for node in timed)
    assert any(node.startswith("tests/browser/test_console_e2e.py") for node in timed)
    assert any(node.startswith("tests/execution/") for node in rest)
    assert not [node for node in rest if node.startswith(("tests/fault/", "tests/contract/"))]

    said = {part: (expression, where) for part, expression, where in PART.findall(parts.stdout)}
    assert said["timed part"][0] == f"(browser or fault or schemathesis) and ({marks})"
    assert said["the rest"][0] == f"(not (browser or fault or schemathesis)) and ({marks})"
    timed_where = said["timed part"][1].split(", ")
    rest_where = said["the rest"][1].split(", ")
    assert timed_where == [
        "database soc_parts",
        "Redis database 7",
        "channels soc-parts",
        "queue soc-parts",
    ]
    # Each resource apart: the rest's database, Redis database, channels and queue.
    assert all(a != b for a, b in zip(timed_where, rest_where, strict=True))
    assert rest_where[0] == "database soc_parts_rest"
    assert rest_where[1] == "Redis database 8"


def test_a_redis_url_without_a_database_number_is_refused_before_anything_runs() -> None:
    refused = subprocess.run(
        ["bin/test-parts", "--collect-only", "-q", "tests/core/test_roles.py"],
        cwd=PROJECT,
        env={**os.environ, "REDIS_URL": "redis://127.0.0.1:6379"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "REDIS_URL must end in a database number, such as /1: redis://127.0.0.1:6379"
    )
    assert "::" not in refused.stdout
