from __future__ import annotations

import pytest

from agents.models import Agent
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_agent_reads_its_own_policy(api) -> None:
    body = api.get("/api/v1/agent/").json()
    assert body["agent"] == "triage-bot"
    assert body["policy"]["version"] == 1
    assert body["policy"]["grants"]["block_ip"] == 3
    assert body["suspended"] is False


def test_agent_registers_a_callback_and_gets_its_secret_once(api) -> None:
    response = api.put(
        "/api/v1/agent/", {"callback_url": "https://agent.example/hook"}, format="json"
    )
    assert response.status_code == 200
    secret = response.json()["callback_secret"]
    assert len(secret) == 64
    agent = Agent.objects.get(slug="triage-bot")
    assert (agent.callback_url, agent.callback_secret) == ("https://agent.example/hook", secret)
    assert "callback_secret" not in api.get("/api/v1/agent/").json()
    assert AuditEvent.objects.filter(event_type="agent.callback_set").count() == 1


@pytest.mark.parametrize(
    "body", [{"callback_url": "ftp://x"}, {"callback_url": "not a url"}, {"hook": "https://x"}]
)
def test_a_bad_callback_is_refused_and_nothing_changes(api, body) -> None:
    response = api.put("/api/v1/agent/", body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert Agent.objects.get(slug="triage-bot").callback_url == ""


def test_a_console_user_is_not_an_agent(client, analyst) -> None:
    client.force_login(analyst)
    assert client.get("/api/v1/agent/").status_code == 403
