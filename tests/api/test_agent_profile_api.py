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


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://localhost:8000/hook",
        "http://[::1]/hook",
    ],
)
def test_a_callback_into_the_socs_own_network_is_refused(api, settings, url) -> None:
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    response = api.put("/api/v1/agent/", {"callback_url": url}, format="json")
    assert response.status_code == 400
    assert "Refused" in response.json()["errors"]["callback_url"][0]
    assert Agent.objects.get(slug="triage-bot").callback_url == ""


def test_delivery_refuses_a_name_that_resolves_inward(agent_with_key, settings) -> None:
    from approvals import callbacks
    from tests import factories

    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    # Registered while allowed (or pointed inward later): delivery checks again and sends nothing.
    Agent.objects.filter(pk=agent_with_key.agent.pk).update(
        callback_url="http://localhost.localdomain:9/hook", callback_secret="s" * 64
    )
    proposal = factories.proposal(agent_with_key, action="block_ip", target="198.18.0.7")
    assert callbacks.deliver(proposal_id=str(proposal.pk), event="decided") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://[zz]/hook",  # urlparse raises on these: they were a 500
        "http://[::1/hook",
        "https://user:pass@agent.example/hook",
        "https://agent.example/hook\n",
        " https://agent.example/hook",
        "https://agent.example:99999/hook",
    ],
)
def test_a_malformed_callback_url_is_a_400(api, url) -> None:
    response = api.put("/api/v1/agent/", {"callback_url": url}, format="json")
    assert response.status_code == 400
    assert "callback_url" in response.json()["errors"]
    assert Agent.objects.get(slug="triage-bot").callback_url == ""
