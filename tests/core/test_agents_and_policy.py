from __future__ import annotations

import ast
import io
import re

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents import keys
from agents.models import ApiKey, Policy
from agents.services import PolicyError, apikey_issue, apikey_revoke, policy_publish
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def test_create_agent_prints_the_key_alone_on_the_last_line() -> None:
    out = io.StringIO()
    call_command(
        "create_agent",
        "edr-bot",
        "--grant",
        "isolate_host=2",
        "--grant",
        "block_ip=3",
        "--auto-threshold",
        "0.95",
        "--review-threshold",
        "0.6",
        stdout=out,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("soc_")
    key = ApiKey.objects.get(agent__slug="edr-bot")
    assert raw not in key.digest  # only a keyed digest is stored
    assert keys.matches(raw, key.digest)
    policy = Policy.objects.get(agent__slug="edr-bot")
    assert (policy.version, policy.auto_threshold, policy.review_threshold) == (1, 0.95, 0.6)
    assert {g.action: g.level for g in policy.grants.all()} == {"isolate_host": 2, "block_ip": 3}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/proposals/").status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grant", "block_ip"], "ACTION=LEVEL"),
        (["--grant", "nuke=2"], "unknown action"),
        (["--grant", "block_ip=7"], "the level must be one of 0 manual only"),
        (["--auto-threshold", "1.5"], "between 0 and 1"),
        (["--auto-threshold", "0.4", "--review-threshold", "0.6"], "above the auto threshold"),
    ],
)
def test_create_agent_refuses_bad_arguments_and_creates_nothing(args, message) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("create_agent", "bad-bot", *args, stdout=io.StringIO())
    assert not ApiKey.objects.filter(agent__slug="bad-bot").exists()


def test_create_agent_refuses_a_duplicate_slug() -> None:
    call_command("create_agent", "twin", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_agent", "twin", stdout=io.StringIO())


def test_policy_edit_publishes_a_new_version_and_old_proposals_keep_theirs(
    agent_with_key,
) -> None:
    first = factories.proposal(
        agent_with_key, action="block_ip", target="198.18.0.9", confidence=0.95
    )
    assert first.status == "auto_approved"
    policy_publish(agent=agent_with_key.agent, grants={"block_ip": 2}, by="ciso")
    second = factories.proposal(
        agent_with_key, action="block_ip", target="198.18.0.10", confidence=0.95
    )
    assert second.status == "pending"
    assert (first.policy_version, second.policy_version) == (1, 2)
    versions = list(agent_with_key.agent.policies.values_list("version", flat=True))
    assert sorted(versions) == [1, 2]
    # the untouched grants carried over to version 2
    assert Policy.objects.get(agent=agent_with_key.agent, version=2).level_for("isolate_host") == 2
    assert AuditEvent.objects.filter(event_type="policy.published").count() == 2


def test_policy_with_review_threshold_above_auto_is_refused(agent_with_key) -> None:
    with pytest.raises(PolicyError):
        policy_publish(agent=agent_with_key.agent, by="x", auto_threshold=0.5, review_threshold=0.7)
    assert agent_with_key.agent.policies.count() == 1


def test_revoking_a_key_is_audited_once(agent_with_key) -> None:
    key = agent_with_key.agent.keys.get()
    assert apikey_revoke(key=key, by="admin") is True
    assert apikey_revoke(key=key, by="admin") is False
    assert AuditEvent.objects.filter(event_type="apikey.revoked").count() == 1


def test_a_second_key_works_and_records_last_use(agent_with_key) -> None:
    issued = apikey_issue(agent=agent_with_key.agent, by="admin", label="rotation")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    assert client.get("/api/v1/proposals/").status_code == 200
    issued.key.refresh_from_db()
    assert issued.key.last_used_at is not None


def test_required_evidence_is_enforced(db) -> None:
    strict = factories.agent("strict", grants={"block_ip": 2}, required_evidence=["alert"])
    blocked = factories.proposal(
        strict, action="block_ip", target="198.18.0.1", evidence=[{"kind": "hunch", "ref": "gut"}]
    )
    assert (blocked.status, blocked.block_code) == ("blocked", "evidence_required")
    allowed = factories.proposal(strict, action="block_ip", target="198.18.0.2")
    assert allowed.status == "pending"


def test_seed_demo_creates_the_five_roles_and_is_idempotent_with_if_empty() -> None:
    from django.contrib.auth.models import User

    call_command("seed_demo", "--weeks", "0", "--pending", "3", stdout=io.StringIO())
    names = set(User.objects.values_list("username", flat=True))
    assert {"analyst", "analyst2", "senior", "manager", "admin"} <= names
    # One agent was demoted through the real path, so the agents page has one to show.
    from agents.models import Agent
    from audit.models import AuditEvent

    demoted = AuditEvent.objects.get(event_type="grant.demoted")
    assert (demoted.data["agent"], demoted.data["action"]) == ("phish-hunter", "quarantine_email")
    assert demoted.data["rule"] == "automatic_rollback"
    assert (demoted.data["from_level"], demoted.data["to_level"]) == (3, 2)
    hunter = Agent.objects.get(slug="phish-hunter").current_policy
    assert hunter.level_for("quarantine_email") == 2
    assert hunter.version == demoted.data["policy_version"]
    out = io.StringIO()
    call_command("seed_demo", "--if-empty", stdout=out)
    assert "skipping" in out.getvalue()


def test_a_second_simulator_retires_abandoned_keys_and_leaves_a_running_ones(db) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from approvals import demo

    demo.ensure_agents()
    agent = factories.agent("sim-target", grants={"block_ip": 2}).agent
    running = apikey_issue(agent=agent, by="tests", label="simulator").key
    abandoned = apikey_issue(agent=agent, by="tests", label="simulator").key
    never_used = apikey_issue(agent=agent, by="tests", label="simulator").key
    now = timezone.now()
    ApiKey.objects.filter(pk=running.pk).update(last_used_at=now - timedelta(seconds=30))
    ApiKey.objects.filter(pk=abandoned.pk).update(last_used_at=now - timedelta(minutes=11))
    ApiKey.objects.filter(pk=never_used.pk).update(created_at=now - timedelta(minutes=11))

    call_command(
        "simulate_agents",
        *("--rate", "1", "--duration", "0.1", "--base-url", "http://127.0.0.1:9"),
        stdout=io.StringIO(),
    )

    still = set(ApiKey.objects.filter(revoked_at__isnull=True).values_list("pk", flat=True))
    assert running.pk in still  # the run `make run` started goes on posting
    assert abandoned.pk not in still and never_used.pk not in still
    # Its own keys are retired as it ends.
    assert not ApiKey.objects.filter(
        label="simulator", revoked_at__isnull=True, created_at__gt=now
    ).exists()


@pytest.mark.postgres
def test_simulate_agents_posts_over_http_and_retires_its_keys(live_server) -> None:
    from approvals.models import Proposal

    out = io.StringIO()
    call_command(
        "simulate_agents",
        "--rate",
        "20",
        "--duration",
        "1.5",
        "--seed",
        "3",
        "--base-url",
        live_server.url,
        stdout=out,
    )
    # Every post the server accepted is a proposal, however few a busy machine let it send.
    done = re.search(r"^done: (\d+) sent: (\{.*\})$", out.getvalue(), re.MULTILINE)
    assert done is not None, out.getvalue()
    outcomes: dict[str, int] = ast.literal_eval(done.group(2))
    accepted = sum(n for label, n in outcomes.items() if not label.startswith(("http", "error")))
    assert accepted >= 3, outcomes
    assert Proposal.objects.count() == accepted
    simulator_keys = ApiKey.objects.filter(label="simulator")
    assert simulator_keys.exists()
    assert not simulator_keys.filter(revoked_at__isnull=True).exists()
