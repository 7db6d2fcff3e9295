"""schemathesis against a live server: every documented operation, generated from the schema
the server publishes, with every check schemathesis has (status codes, content types, headers
and bodies against the schema, schema-valid requests accepted, schema-violating ones refused,
no 5xx, authentication not ignored, …), its stateful phase following the links between
operations, a fixed seed and a bounded number of examples.

The agent's grants let some proposals through (and block others); the analyst's token lets
the stateful phase decide the proposals it created.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from agents.models import ApiKey
from approvals.models import Decision, Proposal, ProposalStatus
from tests import factories

pytestmark = [pytest.mark.schemathesis, pytest.mark.django_db(transaction=True)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
SEED = 20251
MAX_EXAMPLES = 30
GRANTS = {
    "block_ip": 3,
    "close_duplicate": 3,
    "create_ticket": 1,
    "disable_user": 4,
    "enrich_alert": 2,
    "isolate_host": 2,
    "kill_process": 3,
    "quarantine_email": 0,
    "revoke_sessions": 2,
    "update_firewall_policy": 2,
}


def test_the_live_api_keeps_its_schema_under_fuzzing(live_server_url: str, tmp_path: Path) -> None:
    # No review threshold: any confidence the fuzzer picks leaves a level-2 proposal pending, so
    # the stateful phase has proposals an analyst can decide.
    agent = factories.agent("fuzz-bot", grants=GRANTS, review_threshold=0.0)
    # The rate limit has its own tests; here a 429 would only hide the answer under it.
    ApiKey.objects.filter(agent=agent.agent).update(rate_limit_per_minute=10**6)
    analyst = factories.user("fuzz-analyst", factories.ANALYST)
    token = Token.objects.create(user=analyst)

    argv = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{live_server_url}/api/v1/schema/",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        # One worker: hypothesis describes strategies through `ast`, which CPython 3.11 does
        # not make safe across threads (a "recursion depth mismatch" error, not the API's).
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SOC_AGENT_KEY": agent.raw_key,
        "SOC_ANALYST_TOKEN": token.key,
        "COLUMNS": "120",
    }
    run = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False
    )
    output = run.stdout + run.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "schemathesis.txt").write_text(output)
    assert run.returncode == 0, output[-6000:]

    # It ran what it says, and the schema let it build proposals the API accepted.
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and int(generated.group(1)) >= 500, output[-2000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅\s+{phase}", output), f"{phase} did not pass: {output[-2000:]}"
    accepted = Proposal.objects.filter(agent=agent.agent).exclude(status=ProposalStatus.BLOCKED)
    assert accepted.values("action").distinct().count() >= 3
    assert Proposal.objects.filter(status=ProposalStatus.BLOCKED).exists()
    assert Decision.objects.filter(analyst=analyst).exists()
