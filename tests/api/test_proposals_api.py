"""The agent API exactly as DESIGN §11 states it."""

from __future__ import annotations

import itertools
import json
import time
import uuid

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from agents.models import Asset
from approvals.models import Execution, Proposal
from audit.models import AuditEvent
from tests import factories

BODY = {
    "action": "block_ip",
    "target": "203.0.113.7",
    "params": {"duration_minutes": 60},
    "confidence": 0.82,
    "rationale": "Source of 14 failed SSH logins in 2 minutes; listed on two threat feeds.",
    "evidence": [{"kind": "alert", "ref": "SIEM-4821"}],
    "severity": "high",
}

pytestmark = pytest.mark.django_db


def post(api: APIClient, body: dict | str, key: str | None = "key-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    data = body if isinstance(body, str) else json.dumps(body)
    return api.post(
        "/api/v1/proposals/", data=data, content_type="application/json", **headers, **extra
    )


def test_submit_returns_201_with_the_contract_fields(api) -> None:
    response = post(api, BODY)
    assert response.status_code == 201
    body = response.json()
    for field in (
        "id",
        "status",
        "action",
        "target",
        "confidence",
        "required_approvals",
        "approvals",
        "policy_version",
        "created_at",
        "expires_at",
        "decisions",
        "execution",
        "url",
        "console_url",
    ):
        assert field in body
    assert body["status"] == "pending"
    assert body["required_approvals"] == 1
    assert body["policy_version"] == 1
    event = AuditEvent.objects.get(proposal_id=body["id"])
    assert event.event_type == "proposal.submitted"
    assert event.data["status"] == "pending"


def test_replay_with_same_key_and_body_returns_the_same_proposal(api) -> None:
    first = post(api, BODY)
    second = post(api, BODY)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert Proposal.objects.count() == 1


def test_same_key_with_another_body_is_409(api) -> None:
    post(api, BODY)
    response = post(api, {**BODY, "confidence": 0.5})
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_key_reused"
    assert Proposal.objects.count() == 1


_KEYS = itertools.count()
MINIMAL = {k: v for k, v in BODY.items() if k not in ("params", "evidence", "severity")}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.fixed_dictionaries(
        {}, optional={"params": st.just({}), "evidence": st.just([]), "severity": st.just("medium")}
    ),
    again=st.fixed_dictionaries(
        {}, optional={"params": st.just({}), "evidence": st.just([]), "severity": st.just("medium")}
    ),
)
def test_a_retry_that_spells_out_a_default_or_leaves_it_out_is_a_replay(
    api, first: dict, again: dict
) -> None:
    key = f"retry-{next(_KEYS)}"  # one new key, and one proposal, per example
    sent = post(api, {**MINIMAL, **first}, key=str(key))
    assert sent.status_code == 201
    replay = post(api, {**MINIMAL, **again}, key=str(key))
    assert replay.status_code == 200, replay.json()
    assert replay.json()["id"] == sent.json()["id"]
    # Another value than the default is another request.
    other = post(api, {**MINIMAL, **again, "severity": "low"}, key=str(key))
    assert other.status_code == 409


def test_a_retry_of_a_request_hashed_as_sent_before_an_upgrade_is_still_a_replay(api) -> None:
    from approvals.api import request_hash

    first = post(api, MINIMAL)
    # As versions before this one stored it: the hash of the body as sent.
    Proposal.objects.update(request_hash=request_hash(MINIMAL))
    again = post(api, MINIMAL)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert post(api, {**MINIMAL, "confidence": 0.5}).status_code == 409


def test_auto_approved_at_level_three_creates_a_queued_execution(api) -> None:
    response = post(api, {**BODY, "confidence": 0.95})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "auto_approved"
    assert body["execution"]["status"] == "queued"
    assert Execution.objects.filter(proposal_id=body["id"]).count() == 1


def test_low_confidence_is_flagged_not_queued(api) -> None:
    body = post(api, {**BODY, "confidence": 0.3}).json()
    assert body["status"] == "flagged"
    assert body["execution"] is None


def test_level_one_is_advisory(api) -> None:
    response = post(api, {**BODY, "action": "create_ticket", "target": "SIEM-4821", "params": {}})
    assert response.status_code == 201
    assert response.json()["status"] == "advisory"


def test_critical_asset_needs_two_approvals(api) -> None:
    factories.asset("10.0.0.1", kind="ip", criticality="critical")
    body = post(api, {**BODY, "target": "10.0.0.1", "confidence": 0.99}).json()
    assert body["status"] == "pending"
    assert body["required_approvals"] == 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (
            {"action": "quarantine_email", "target": "<abc@mail.example>", "params": {}},
            "action_not_permitted",
        ),
        (
            {"action": "reset_password", "target": "jdoe@corp.example", "params": {}},
            "action_not_permitted",
        ),
    ],
)
def test_outside_policy_is_403_and_recorded_as_blocked(api, change, code) -> None:
    response = post(api, {**BODY, **change})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    proposal = Proposal.objects.get(pk=problem["proposal"]["id"])
    assert proposal.status == "blocked"
    assert proposal.block_code == code
    assert AuditEvent.objects.filter(proposal_id=proposal.pk).exists()


def test_target_out_of_scope_is_blocked(db) -> None:
    scoped = factories.agent("scoped", grants={"isolate_host": 2}, scope_tiers=["low", "medium"])
    factories.asset("dc01.corp.example", criticality="high")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {scoped.raw_key}")
    response = post(
        client, {**BODY, "action": "isolate_host", "target": "dc01.corp.example", "params": {}}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "target_out_of_scope"


def test_suspended_agent_is_blocked(api, agent_with_key, manager) -> None:
    from approvals.services import agent_suspend

    agent_suspend(agent=agent_with_key.agent, by=manager, reason="misbehaving")
    response = post(api, BODY)
    assert response.status_code == 403
    assert response.json()["code"] == "agent_suspended"
    assert response.json()["title"] == "Agent suspended"


def test_emergency_stop_blocks_proposals(api, manager) -> None:
    from approvals.services import emergency_stop_engage

    emergency_stop_engage(by=manager, reason="incident bridge")
    response = post(api, BODY)
    assert response.status_code == 403
    assert response.json()["code"] == "emergency_stop"
    assert response.json()["title"] == "Emergency stop engaged"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": "0.8"}, "confidence"),
        ({"confidence": True}, "confidence"),
        ({"target": "not-an-ip"}, "target"),
        ({"target": 12345}, "target"),
        ({"action": "launch_missiles"}, "action"),
        ({"surprise": 1}, "surprise"),
        ({"rationale": "x" * 5000}, "rationale"),
        ({"evidence": [{"kind": "alert", "ref": "r"}] * 30}, "evidence"),
        ({"evidence": [{"kind": "alert", "ref": "r", "secret": "x"}]}, "evidence.0.secret"),
        ({"params": {"duration_minutes": "forever"}}, "params.duration_minutes"),
        ({"params": {"rm_rf": True}}, "params.rm_rf"),
        ({"severity": "apocalyptic"}, "severity"),
    ],
)
def test_invalid_input_is_400_with_field_errors_and_nothing_recorded(api, change, field) -> None:
    before = AuditEvent.objects.count()
    response = post(api, {**BODY, **change})
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert field in problem["errors"], problem
    assert problem["detail"]
    assert Proposal.objects.count() == 0
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"confidence": True}, "confidence", "Must be a number between 0 and 1, not a boolean."),
        ({"confidence": False}, "confidence", "Must be a number between 0 and 1, not a boolean."),
        ({"confidence": "0.8"}, "confidence", "Must be a number between 0 and 1, not a string."),
        ({"confidence": [0.8]}, "confidence", "Must be a number between 0 and 1, not an array."),
        ({"confidence": {}}, "confidence", "Must be a number between 0 and 1, not an object."),
        (
            {"params": {"duration_minutes": True}},
            "params.duration_minutes",
            "duration_minutes must be an integer, not a boolean",
        ),
        (
            {"params": {"duration_minutes": 1.5}},
            "params.duration_minutes",
            "duration_minutes must be an integer, not 1.5",
        ),
        (
            {"params": {"duration_minutes": "60"}},
            "params.duration_minutes",
            "duration_minutes must be an integer, not a string",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_named_by_what_it_is(api, change, field, message) -> None:
    response = post(api, {**BODY, **change})
    assert response.status_code == 400, response.content
    assert response.json()["errors"][field] == [message]
    assert Proposal.objects.count() == 0


def test_missing_field_is_reported(api) -> None:
    body = {k: v for k, v in BODY.items() if k != "rationale"}
    response = post(api, body)
    assert response.status_code == 400
    assert "rationale" in response.json()["errors"]


def test_malformed_json_is_400(api) -> None:
    response = post(api, "{not json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("header", [None, "Bearer soc_abc_def", "Bearer nonsense", "Basic x"])
def test_missing_or_unknown_key_is_401(db, header) -> None:
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = post(client, BODY)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_revoked_key_is_401(api, agent_with_key) -> None:
    from agents.services import apikey_revoke

    apikey_revoke(key=agent_with_key.agent.keys.get(), by="tests")
    response = post(api, BODY)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_list_shows_only_own_proposals_newest_first_with_status_filter(api, db) -> None:
    other = factories.agent("other-bot", grants={"block_ip": 2})
    factories.proposal(other, action="block_ip", target="198.18.0.1")
    post(api, BODY, key="a")
    post(api, {**BODY, "confidence": 0.3, "target": "203.0.113.8"}, key="b")
    body = api.get("/api/v1/proposals/").json()
    assert body["count"] == 2
    assert [p["target"] for p in body["results"]] == ["203.0.113.8", "203.0.113.7"]
    flagged = api.get("/api/v1/proposals/?status=flagged").json()
    assert [p["status"] for p in flagged["results"]] == ["flagged"]
    bad = api.get("/api/v1/proposals/?status=nonsense")
    assert bad.status_code == 400


def test_another_agents_proposal_is_404(api, db) -> None:
    other = factories.agent("other-bot", grants={"block_ip": 2})
    theirs = factories.proposal(other, action="block_ip", target="198.18.0.1")
    assert api.get(f"/api/v1/proposals/{theirs.pk}/").status_code == 404
    assert api.post(f"/api/v1/proposals/{theirs.pk}/withdraw/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "pending"


def test_withdraw_while_pending_then_409(api, analyst) -> None:
    pid = post(api, BODY).json()["id"]
    response = api.post(f"/api/v1/proposals/{pid}/withdraw/")
    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"
    again = api.post(f"/api/v1/proposals/{pid}/withdraw/")
    assert again.status_code == 409
    assert again.json()["code"] == "not_pending"


def test_withdraw_after_decision_is_409(api, analyst) -> None:
    from approvals.services import proposal_approve

    pid = post(api, BODY).json()["id"]
    proposal_approve(proposal_id=pid, analyst=analyst)
    response = api.post(f"/api/v1/proposals/{pid}/withdraw/")
    assert response.status_code == 409
    assert "approved by alice" in response.json()["detail"]


def test_rate_limit_is_429_with_retry_after(api, agent_with_key) -> None:
    key = agent_with_key.agent.keys.get()
    key.rate_limit_per_minute = 3
    key.save(update_fields=["rate_limit_per_minute"])
    statuses = [api.get("/api/v1/proposals/").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3] == 429
    response = api.get("/api/v1/proposals/")
    assert int(response["Retry-After"]) >= 1
    assert response.json()["code"] == "rate_limited"


def test_schema_and_docs_are_served(db) -> None:
    client = APIClient()
    schema = client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    document = schema.json()
    # The agent's key is a documented scheme, and the proposals endpoint accepts it.
    assert document["components"]["securitySchemes"]["agentApiKey"]["scheme"] == "bearer"
    submit = document["paths"]["/api/v1/proposals/"]["post"]
    assert {"agentApiKey": []} in submit["security"]
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    # Served from the console itself: works offline, runs no third-party script.
    assert b"/static/drf_spectacular_sidecar/" in docs.content
    assert b"cdn." not in docs.content


def test_a_target_outside_the_inventory_takes_the_unknown_asset_criticality(api, settings) -> None:
    body = post(api, BODY).json()
    assert body["criticality"] == "high"  # the default: unknown fails closed
    assert body["asset"] is None
    assert not Asset.objects.exists()
    settings.UNKNOWN_ASSET_CRITICALITY = "critical"
    body = post(api, {**BODY, "target": "203.0.113.9", "confidence": 0.99}, key="k2").json()
    assert (body["criticality"], body["status"], body["required_approvals"]) == (
        "critical",
        "pending",
        2,
    )


def test_replaying_a_blocked_proposal_returns_200_with_the_recorded_proposal(api) -> None:
    body = {**BODY, "action": "reset_password", "target": "jdoe@corp.example", "params": {}}
    first = post(api, body, key="blocked-once")
    assert first.status_code == 403
    again = post(api, body, key="blocked-once")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["proposal"]["id"]
    assert again.json()["status"] == "blocked"
    assert again.json()["code"] == "action_not_permitted"
    assert Proposal.objects.count() == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=", "status"),
        ("status=pending&status=flagged", "status"),
        ("page=last", "page"),
        ("page=0", "page"),
        ("page=", "page"),
        ("agent=ut-b", "agent"),
        ("status=pending&page_size=100000", "page_size"),
    ],
)
def test_a_list_query_the_schema_does_not_allow_is_a_400(api, query, field) -> None:
    response = api.get(f"/api/v1/proposals/?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_a_page_past_the_last_is_a_404_problem(api) -> None:
    response = api.get("/api/v1/proposals/?page=2")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body", [{"reason": 12345}, {"reason": "ok"}, {}, {"reason": "why", "x": 1}]
)
def test_a_rollback_body_is_validated_like_a_decision(api, analyst, body) -> None:
    from rest_framework.authtoken.models import Token

    pid = post(api, BODY).json()["id"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=analyst).key}")
    response = client.post(f"/api/v1/proposals/{pid}/rollback/", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]


def test_an_ip_target_with_a_zone_id_is_refused(api) -> None:
    response = post(api, {**BODY, "target": "fe80::1%eth0"})
    assert response.status_code == 400
    assert "target" in response.json()["errors"]


def test_rate_limit_counts_per_process_while_redis_is_down(
    api, agent_with_key, settings, monkeypatch, caplog
) -> None:
    from agents import throttling
    from tests.processes import free_port

    key = agent_with_key.agent.keys.get()
    key.rate_limit_per_minute = 3
    key.save(update_fields=["rate_limit_per_minute"])
    redis_url = settings.REDIS_URL
    # Nothing listens there: every connection is refused, as when Redis is stopped.
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setattr(throttling, "_client", None)
    monkeypatch.setattr(throttling, "_local", throttling._LocalCounter())

    statuses = [api.get("/api/v1/proposals/").status_code for _ in range(5)]

    assert statuses == [200, 200, 200, 429, 429]
    assert caplog.text.count("Redis is not answering") == 1  # once for the outage

    settings.REDIS_URL = redis_url
    throttling._client = None
    time.sleep(throttling.REDIS_RETRY_SECONDS)
    assert api.get("/api/v1/proposals/").status_code == 200  # a fresh count in Redis
    assert caplog.text.count("Redis answers again") == 1


def test_an_id_in_either_case_names_the_same_proposal_and_hides_another_agents(
    api, analyst
) -> None:
    mine = post(api, BODY).json()["id"]
    other = factories.agent("other-bot", grants={"block_ip": 2})
    theirs = str(factories.proposal(other, action="block_ip", target="198.18.0.1").pk)
    console = Client()
    console.force_login(analyst)
    unknown = api.get(f"/api/v1/proposals/{uuid.uuid4()}/").json()

    @settings(max_examples=40)
    @given(capitals=st.lists(st.booleans(), min_size=36, max_size=36))
    def spelled(capitals: list[bool]) -> None:
        def spell(pid: str) -> str:
            return "".join(c.upper() if up else c for c, up in zip(pid, capitals, strict=True))

        got = api.get(f"/api/v1/proposals/{spell(mine)}/")
        assert got.status_code == 200
        assert got.json()["id"] == mine
        hidden = api.get(f"/api/v1/proposals/{spell(theirs)}/")
        assert hidden.status_code == 404
        assert hidden.json() == unknown  # as if it did not exist
        assert api.post(f"/api/v1/proposals/{spell(theirs)}/withdraw/").status_code == 404
        page = console.get(f"/proposals/{spell(mine)}/")
        assert page.status_code == 200
        assert mine in page.content.decode()
        if spell(mine) != mine:  # the page links the id as the API gives it
            assert spell(mine) not in page.content.decode()

    spelled()
    assert Proposal.objects.get(pk=theirs).status == "pending"
