from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from agents.models import Agent, ApiKey, Policy
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    User.objects.create_superuser("root", "root@soc.example", "pass-for-tests")
    client.force_login(User.objects.get(username="root"))
    return client


def test_adding_an_agent_in_the_admin_registers_it_with_a_policy_and_a_key(admin_client) -> None:
    response = admin_client.post(
        "/admin/agents/agent/add/",
        {"slug": "admin-made", "name": "Admin made", "description": "", "callback_url": ""},
        follow=True,
    )
    assert response.status_code == 200
    agent = Agent.objects.get(slug="admin-made")
    assert agent.policies.count() == 1
    assert ApiKey.objects.filter(agent=agent).count() == 1
    assert b"copy it now" in response.content
    assert AuditEvent.objects.filter(event_type="agent.registered").exists()


def test_editing_a_policy_in_the_admin_publishes_a_new_version(admin_client, agent_with_key):
    policy = agent_with_key.agent.current_policy
    form = {
        "agent": agent_with_key.agent.pk,
        "purpose": "tightened after an incident",
        "scope_tiers": "[]",
        "scope_groups": "[]",
        "allowed_connectors": "[]",
        "auto_threshold": "0.95",
        "review_threshold": "0.6",
        "escalate_after_minutes": "10",
        "expire_after_minutes": "120",
        "notify": "senior_analyst",
        "required_evidence": "[]",
        "rollback_procedure": "",
        "grants_text": "block_ip=2\nisolate_host=1",
        "grants-TOTAL_FORMS": "0",
        "grants-INITIAL_FORMS": "0",
    }
    response = admin_client.post(f"/admin/agents/policy/{policy.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    newest = Policy.objects.filter(agent=agent_with_key.agent).order_by("-version").first()
    assert newest.version == 2
    assert newest.auto_threshold == 0.95
    assert newest.level_for("block_ip") == 2
    assert newest.level_for("isolate_host") == 1
    assert newest.level_for("kill_process") == 3  # carried over
    assert newest.max_pending == 50  # left empty: carried over
    assert newest.grants.get(action="block_ip").max_auto_per_hour == 20
    policy.refresh_from_db()
    assert policy.auto_threshold == 0.9  # the old version is unchanged


@pytest.mark.parametrize(
    ("grant", "message"),
    [
        ("block_ip=9", b"the level must be one of 0 manual only"),
        # The admin checks action names as create_agent does: one parser for both.
        ("nuke_everything=2", b"unknown action"),
        ("block_ip", b"write ACTION=LEVEL"),
    ],
)
def test_a_bad_grant_in_the_admin_is_a_form_error(admin_client, agent_with_key, grant, message):
    policy = agent_with_key.agent.current_policy
    response = admin_client.post(
        f"/admin/agents/policy/{policy.pk}/change/",
        {
            "agent": agent_with_key.agent.pk,
            "auto_threshold": "0.9",
            "review_threshold": "0.5",
            "escalate_after_minutes": "10",
            "expire_after_minutes": "100",
            "scope_tiers": "[]",
            "scope_groups": "[]",
            "allowed_connectors": "[]",
            "required_evidence": "[]",
            "grants_text": grant,
            "grants-TOTAL_FORMS": "0",
            "grants-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert message in response.content
    assert agent_with_key.agent.policies.count() == 1


def test_changing_an_assets_criticality_in_the_admin_is_audited_with_the_old_value(
    admin_client,
) -> None:
    from agents.models import Asset

    asset = Asset.objects.create(kind="host", identifier="db9.corp.example", criticality="low")
    response = admin_client.post(
        f"/admin/agents/asset/{asset.pk}/change/",
        {
            "kind": "host",
            "identifier": "db9.corp.example",
            "criticality": "critical",
            "group": "",
            "owner": "",
            "description": "",
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(event_type="asset.saved")
    assert event.actor == "root"
    assert event.data["criticality"] == "critical"
    assert event.data["before"]["criticality"] == "low"


ASSET_FORM = {
    "kind": "host",
    "identifier": "DC01.Corp.Example.",
    "criticality": "critical",
    "group": "domain-controllers",
    "owner": "",
    "description": "",
}


def test_an_assets_aliases_are_edited_in_the_admin_and_stored_canonical(admin_client) -> None:
    from agents.models import Asset, AssetAlias

    response = admin_client.post(
        "/admin/agents/asset/add/",
        {**ASSET_FORM, "aliases_text": "LDAP.corp.example.\n::ffff:10.0.0.11\n"},
    )
    assert response.status_code == 302
    asset = Asset.objects.get()
    assert asset.identifier == "dc01.corp.example"
    names = dict(AssetAlias.objects.filter(asset=asset).values_list("value", "primary"))
    assert names == {"dc01.corp.example": True, "ldap.corp.example": False, "10.0.0.11": False}
    page = admin_client.get(f"/admin/agents/asset/{asset.pk}/change/").content.decode()
    assert "10.0.0.11\nldap.corp.example</textarea>" in page
    response = admin_client.post(
        f"/admin/agents/asset/{asset.pk}/change/",
        {**ASSET_FORM, "aliases_text": "ldap.corp.example"},
    )
    assert response.status_code == 302
    assert set(AssetAlias.objects.values_list("value", flat=True)) == {
        "dc01.corp.example",
        "ldap.corp.example",
    }
    event = AuditEvent.objects.filter(event_type="asset.saved").last()
    assert event.data["aliases"] == ["ldap.corp.example"]
    assert event.data["before"]["aliases"] == ["10.0.0.11", "ldap.corp.example"]


def test_an_alias_that_names_nothing_is_refused_in_the_admin_and_nothing_is_saved(
    admin_client,
) -> None:
    from agents.models import Asset

    response = admin_client.post(
        "/admin/agents/asset/add/", {**ASSET_FORM, "aliases_text": "ldap..corp.example"}
    )
    assert response.status_code == 200
    assert "The alias &#x27;ldap..corp.example&#x27; must be a host name" in (
        response.content.decode()
    )
    assert not Asset.objects.exists()
    assert not AuditEvent.objects.filter(event_type="asset.saved").exists()


def test_api_keys_cannot_be_deleted_in_the_admin_only_revoked(admin_client, agent_with_key) -> None:
    key = agent_with_key.agent.keys.get()
    assert (
        admin_client.post(f"/admin/agents/apikey/{key.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_connector_state_and_ledger_are_readable_in_the_admin_and_not_editable(
    admin_client,
) -> None:
    from approvals import connectors
    from approvals.models import ConnectorState

    connectors.perform(
        action="block_ip", target="203.0.113.9", params={}, idempotency_key="admin-view-1"
    )
    listing = admin_client.get("/admin/approvals/connectorstate/")
    assert listing.status_code == 200
    assert b"203.0.113.9" in listing.content
    ledger = admin_client.get("/admin/approvals/connectorcall/")
    assert ledger.status_code == 200 and b"admin-view-1" in ledger.content
    assert admin_client.get("/admin/approvals/connectorstate/add/").status_code == 403
    state = ConnectorState.objects.get(connector="firewall", target="203.0.113.9")
    response = admin_client.post(
        f"/admin/approvals/connectorstate/{state.pk}/change/",
        {"connector": "firewall", "target": "203.0.113.9", "state": "{}"},
    )
    assert response.status_code == 403
    state.refresh_from_db()
    assert state.state == {"blocked": True}


def test_the_admin_sets_the_breaker_and_a_grants_budget(
    admin_client: Any, agent_with_key: Any
) -> None:
    policy = agent_with_key.agent.current_policy
    form = {
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
        "max_pending": "12",
        "max_proposals_per_minute": "6",
        "grants_text": "",
        "budgets_text": "block_ip=4/2",
        "grants-TOTAL_FORMS": "0",
        "grants-INITIAL_FORMS": "0",
    }
    response = admin_client.post(f"/admin/agents/policy/{policy.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    newest = agent_with_key.agent.current_policy
    assert (newest.max_pending, newest.max_proposals_per_minute) == (12, 6)
    block = newest.grants.get(action="block_ip")
    assert (block.max_auto_per_hour, block.max_targets_per_hour) == (4, 2)
    assert newest.grants.get(action="isolate_host").max_auto_per_hour == 20
    event = AuditEvent.objects.filter(event_type="policy.published").order_by("-seq").first()
    assert event.data["budgets"]["block_ip"] == [4, 2]
