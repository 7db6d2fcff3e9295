"""A grant's demotion rules as the admin writes them: parsed by agents.grants, carried from
version to version by policy_publish, refused with a form error when they cannot be read."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from agents import grants
from agents.demotion import DemotionRules, rules_of
from agents.services import PolicyError, policy_publish
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Any) -> Any:
    User.objects.create_superuser("root", "root@soc.example", "pass-for-tests")
    client.force_login(User.objects.get(username="root"))
    return client


def _form(agent_with_key: Any, demotions: str) -> dict[str, Any]:
    return {
        "agent": agent_with_key.agent.pk,
        "purpose": "",
        "scope_tiers": "[]",
        "scope_groups": "[]",
        "allowed_connectors": "[]",
        "auto_threshold": "0.9",
        "review_threshold": "0.5",
        "escalate_after_minutes": "15",
        "expire_after_minutes": "240",
        "notify": "senior_analyst",
        "required_evidence": "[]",
        "rollback_procedure": "",
        "grants_text": "",
        "budgets_text": "",
        "demotions_text": demotions,
    }


def test_a_demotion_line_reads_each_key_and_leaves_out_the_rest() -> None:
    assert grants.parse_demotion("block_ip: to=1 last=10 above=30% over_confidence=off") == (
        "block_ip",
        {"to_level": 1, "failure_window": 10, "failure_percent": 30, "over_confidence": False},
    )
    line = grants.format_demotion("block_ip", DemotionRules().as_dict())
    assert line == "block_ip: to=2 last=20 above=25 over_confidence=on automatic_rollback=on"
    assert grants.parse_demotion(line) == ("block_ip", DemotionRules().as_dict())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("block_ip to=2", "write ACTION: key=value"),
        ("nuke: to=2", "unknown action"),
        ("block_ip: to=7", "to must be a level"),
        ("block_ip: above=101", "above must be a whole percentage"),
        ("block_ip: last=-1", "last must be a whole number"),
        ("block_ip: over_confidence=maybe", "over_confidence must be on or off"),
        ("block_ip: sometimes=1", "is not one of"),
    ],
)
def test_a_demotion_line_that_cannot_be_read_says_what_to_write(line: str, message: str) -> None:
    with pytest.raises(grants.GrantError, match=message):
        grants.parse_demotion(line)


def test_the_admin_sets_a_grants_demotion_rules_and_the_next_version_keeps_them(
    admin_client: Any, agent_with_key: Any
) -> None:
    policy = agent_with_key.agent.current_policy
    page = admin_client.get(f"/admin/agents/policy/{policy.pk}/change/")
    assert b"block_ip: to=2 last=20 above=25 over_confidence=on automatic_rollback=on" in (
        page.content
    )
    form = _form(agent_with_key, "block_ip: to=1 last=10 above=40 automatic_rollback=off")
    response = admin_client.post(f"/admin/agents/policy/{policy.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    block = agent_with_key.agent.current_policy.grants.get(action="block_ip")
    assert rules_of(block) == DemotionRules(
        to_level=1, failure_window=10, failure_percent=40, automatic_rollback=False
    )
    event = AuditEvent.objects.filter(event_type="policy.published").order_by("-seq").first()
    assert event.data["demotion_rules"]["block_ip"]["to_level"] == 1
    assert event.data["demotion_rules"]["isolate_host"] == DemotionRules().as_dict()

    later = policy_publish(agent=agent_with_key.agent, grants={"block_ip": 2}, by="tests")
    assert rules_of(later.grants.get(action="block_ip")).failure_window == 10


def test_bad_demotion_rules_in_the_admin_are_a_form_error_and_publish_nothing(
    admin_client: Any, agent_with_key: Any
) -> None:
    policy = agent_with_key.agent.current_policy
    form = _form(agent_with_key, "block_ip: above=250")
    response = admin_client.post(f"/admin/agents/policy/{policy.pk}/change/", form)
    assert response.status_code == 200
    assert b"above must be a whole percentage from 0 to 100" in response.content
    assert agent_with_key.agent.policies.count() == 1


def test_rules_for_an_action_the_policy_does_not_grant_are_refused(agent_with_key: Any) -> None:
    policy_publish(agent=agent_with_key.agent, grants={}, by="tests")
    with pytest.raises(PolicyError, match="grants no such action"):
        policy_publish(
            agent=agent_with_key.agent, demotions={"reset_password": {"to_level": 1}}, by="t"
        )
    with pytest.raises(PolicyError, match="to_level must be one of"):
        policy_publish(agent=agent_with_key.agent, demotions={"block_ip": {"to_level": 9}}, by="t")
