"""Every console page and action is checked on the server, whatever the page shows."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from agents.models import EmergencyStop
from approvals.models import Decision, Proposal
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

PAGES = ["/", "/lists/", "/agents/", "/partials/stop-banner/"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_is_sent_to_sign_in_from_every_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={path}")


def test_anonymous_is_sent_to_sign_in_from_the_proposal_page(
    client: Client, pending: Proposal
) -> None:
    response = client.get(f"/proposals/{pending.id}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "path",
    [
        "/proposals/{id}/decide/",
        "/proposals/{id}/rollback/",
        "/proposals/{id}/confirm/",
        "/emergency-stop/",
        "/agents/triage-bot/suspend/",
    ],
)
def test_anonymous_actions_change_nothing(client: Client, pending: Proposal, path: str) -> None:
    response = client.post(path.format(id=pending.id), {"verdict": "approve", "engage": "1"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert not EmergencyStop.objects.filter(engaged=True).exists()


def test_user_without_a_console_role_gets_403(
    signed_in: Callable[[User], Client], pending: Proposal
) -> None:
    nobody = factories.user("visitor")
    client = signed_in(nobody)
    for path in [*PAGES, f"/proposals/{pending.id}/"]:
        assert client.get(path).status_code == 403, path
    assert client.post(f"/proposals/{pending.id}/decide/", {"verdict": "approve"}).status_code == (
        403
    )
    assert not Decision.objects.exists()


@pytest.mark.parametrize("role", ["analyst", "senior", "manager"])
def test_every_role_reads_every_console_page(
    request: pytest.FixtureRequest,
    signed_in: Callable[[User], Client],
    pending: Proposal,
    role: str,
) -> None:
    client = signed_in(request.getfixturevalue(role))
    for path in [*PAGES, f"/proposals/{pending.id}/"]:
        assert client.get(path).status_code == 200, path


def test_analyst_cannot_engage_the_emergency_stop(
    signed_in: Callable[[User], Client], analyst: User
) -> None:
    response = signed_in(analyst).post("/emergency-stop/", {"engage": "1", "reason": "test"})
    assert response.status_code == 403
    assert not EmergencyStop.objects.filter(engaged=True).exists()
    assert not AuditEvent.objects.filter(event_type="emergency_stop.engaged").exists()


def test_analyst_cannot_suspend_an_agent(
    signed_in: Callable[[User], Client], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    response = signed_in(analyst).post(
        "/agents/triage-bot/suspend/", {"suspend": "1", "reason": "x"}
    )
    assert response.status_code == 403
    agent_with_key.agent.refresh_from_db()
    assert not agent_with_key.agent.suspended


def test_manager_engages_and_lifts_the_stop_with_a_reason(
    signed_in: Callable[[User], Client], manager: User
) -> None:
    client = signed_in(manager)
    refused = client.post(
        "/emergency-stop/", {"engage": "1", "reason": "  "}, HTTP_HX_REQUEST="true"
    )
    assert "Say why you stop." in refused.content.decode()
    assert not EmergencyStop.objects.filter(engaged=True).exists()

    engaged = client.post(
        "/emergency-stop/", {"engage": "1", "reason": "agent misbehaving"}, HTTP_HX_REQUEST="true"
    )
    assert "Emergency stop engaged" in engaged.content.decode()
    stop = EmergencyStop.objects.get(id=1)
    assert stop.engaged and stop.reason == "agent misbehaving" and stop.changed_by == manager
    event = AuditEvent.objects.get(event_type="emergency_stop.engaged")
    assert event.actor == "maya" and event.data["reason"] == "agent misbehaving"

    # Every page shows the banner while it is on.
    page = client.get("/lists/").content.decode()
    assert "EMERGENCY STOP ENGAGED" in page and "agent misbehaving" in page

    client.post("/emergency-stop/", {"engage": "0", "reason": "fixed"}, HTTP_HX_REQUEST="true")
    assert not EmergencyStop.objects.get(id=1).engaged
    assert "EMERGENCY STOP ENGAGED" not in client.get("/").content.decode()


def test_manager_cannot_approve(
    signed_in: Callable[[User], Client], manager: User, pending: Proposal
) -> None:
    response = signed_in(manager).post(f"/proposals/{pending.id}/decide/", {"verdict": "approve"})
    assert response.status_code == 403
    pending.refresh_from_db()
    assert pending.status == "pending" and pending.approvals == 0


def test_manager_sees_the_queue_without_decision_buttons_being_usable(
    signed_in: Callable[[User], Client], manager: User, pending: Proposal
) -> None:
    page = signed_in(manager).get("/").content.decode()
    assert str(pending.id) in page
    assert 'data-can-decide="false"' in page  # the stylesheet hides the buttons
    assert "only analysts, senior analysts and admins decide" in page


def test_proposal_page_404_for_an_unknown_id(
    signed_in: Callable[[User], Client], analyst: User
) -> None:
    response = signed_in(analyst).get("/proposals/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404


# --- the analyst decision API (DESIGN §11) ----------------------------------------------------


def _decide(client: APIClient, proposal: Proposal, verdict: str, reason: str = "") -> object:
    return client.post(
        f"/api/v1/proposals/{proposal.id}/decisions/",
        data=json.dumps({"verdict": verdict, "reason": reason}),
        content_type="application/json",
    )


def _session_api(user: User) -> APIClient:
    client = APIClient(enforce_csrf_checks=False)
    client.force_login(user)
    return client


def test_api_decision_is_201_with_the_proposal(analyst: User, pending: Proposal) -> None:
    response = _decide(_session_api(analyst), pending, "approve", "confirmed beaconing")
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == str(pending.id)
    assert body["status"] == "approved"
    assert body["decisions"][0]["analyst"] == "alice"
    assert body["decisions"][0]["reason"] == "confirmed beaconing"
    assert body["execution"]["status"] == "queued"


def test_api_decision_is_409_once_decided_and_names_who(
    analyst: User, analyst2: User, pending: Proposal
) -> None:
    assert _decide(_session_api(analyst), pending, "reject", "false positive").status_code == 201
    response = _decide(_session_api(analyst2), pending, "approve")
    assert response.status_code == 409
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["detail"] == "Already rejected by alice."


def test_api_decision_is_403_for_a_manager(manager: User, pending: Proposal) -> None:
    response = _decide(_session_api(manager), pending, "approve")
    assert response.status_code == 403
    assert not Decision.objects.exists()


def test_api_decision_is_403_for_an_agent_key(api: APIClient, pending: Proposal) -> None:
    response = _decide(api, pending, "approve")
    assert response.status_code == 403
    assert not Decision.objects.exists()


def test_api_decision_is_403_when_a_junior_gives_the_final_critical_approval(
    analyst: User, analyst2: User, critical_pending: Proposal
) -> None:
    assert _decide(_session_api(analyst), critical_pending, "approve").status_code == 201
    response = _decide(_session_api(analyst2), critical_pending, "approve")
    assert response.status_code == 403
    assert response.json()["code"] == "senior_required"
    critical_pending.refresh_from_db()
    assert critical_pending.status == "pending" and critical_pending.approvals == 1


def test_api_reject_without_a_reason_is_400(analyst: User, pending: Proposal) -> None:
    response = _decide(_session_api(analyst), pending, "reject", " ")
    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_api_decision_needs_sign_in(pending: Proposal) -> None:
    response = _decide(APIClient(), pending, "approve")
    assert response.status_code in (401, 403)
    assert not Decision.objects.exists()


def test_a_chat_ops_bot_decides_with_its_users_token(agent_with_key, analyst) -> None:
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    proposal = factories.proposal(agent_with_key, target="ws-0300.corp.example")
    bot = APIClient(enforce_csrf_checks=True)
    bot.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=analyst).key}")
    response = bot.post(
        f"/api/v1/proposals/{proposal.pk}/decisions/",
        {"verdict": "approve", "reason": "confirmed in chat"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["decisions"][0]["analyst"] == "alice"


def test_a_refused_page_explains_itself_inside_the_console(client, analyst) -> None:
    client.force_login(analyst)
    response = client.get("/reports/")
    assert response.status_code == 403
    assert b"Not for your role" in response.content
    assert b"Back to the queue" in response.content


def test_an_unknown_api_path_answers_in_problem_json(db) -> None:
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/propsals/", {}, format="json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert "/api/v1/docs/" in response.json()["detail"]


def test_rollback_by_api_is_for_analysts_not_agents(agent_with_key, analyst) -> None:
    from rest_framework.authtoken.models import Token

    from approvals import services
    from approvals.models import Execution

    proposal = factories.proposal(agent_with_key, target="ws-0301.corp.example")
    services.proposal_approve(proposal_id=proposal.pk, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    services.execution_run(execution_id=execution.id)
    path = f"/api/v1/proposals/{proposal.pk}/rollback/"

    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_with_key.raw_key}")
    refused = agent.post(path, {"reason": "the agent changed its mind"}, format="json")
    assert refused.status_code == 403
    assert "an agent's API key cannot" in refused.json()["detail"]

    # A manager's token is refused in words about the account, not about an API key.
    boss = APIClient()
    token = Token.objects.create(user=factories.user("mo", factories.MANAGER))
    boss.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    refused = boss.post(path, {"reason": "the manager changed their mind"}, format="json")
    assert refused.status_code == 403
    assert "this account has none of those roles" in refused.json()["detail"]
    assert "API key" not in refused.json()["detail"]

    bot = APIClient()
    bot.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=analyst).key}")
    response = bot.post(path, {"reason": "false positive, confirmed in chat"}, format="json")
    assert response.status_code == 202
    assert response.json()["execution"]["status"] == "rolling_back"
    assert Execution.objects.get(pk=execution.pk).status == "rolling_back"


def test_an_audit_event_page_is_for_those_who_read_the_audit_page(
    client: Client, analyst, senior, manager, pending: Proposal
) -> None:
    event = AuditEvent.objects.order_by("seq").first()
    url = f"/audit/events/{event.seq}/"
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={url}")
    admin = factories.user("ada", factories.ADMIN)
    for person, status in ((analyst, 403), (senior, 403), (manager, 200), (admin, 200)):
        client.force_login(person)
        assert client.get(url).status_code == client.get("/audit/").status_code == status
    # A POST is not a way in either.
    assert client.post(url).status_code == 405
