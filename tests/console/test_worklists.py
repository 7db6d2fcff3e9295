"""Work lists that can be finished: bulk confirmation of what ran without approval, retry and
acknowledgement of failed executions, and the Advisory and Blocked pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals import services, tasks
from approvals.models import Execution, ExecutionStatus, Proposal
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def _auto(owner: factories.AgentWithKey, target: str) -> Proposal:
    proposal = factories.proposal(owner, action="block_ip", target=target, confidence=0.97)
    assert proposal.status == "auto_approved", proposal.routing_explanation
    return proposal


def _failed(owner: factories.AgentWithKey, analyst: User, target: str) -> Execution:
    proposal = factories.proposal(owner, action="isolate_host", target=target)
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    assert tasks.run_execution(str(execution.id)) == "failed"
    return execution


def _messages(response: object) -> list[str]:
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]


def _failed_count(client: Client) -> int:
    page = client.get(reverse("queue")).content.decode()
    found = re.search(r"<strong>(\d+)</strong> failed", page)
    assert found, "the top bar shows the failed count"
    return int(found.group(1))


# --- ran without approval: bulk confirmation ------------------------------------------------


def test_bulk_confirm_confirms_each_and_says_which_was_refused_and_why(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
    analyst2: User,
) -> None:
    first, second, third = (_auto(agent_with_key, f"203.0.113.{n}") for n in (1, 2, 3))
    # Bob confirmed the second one a moment before Alice's bulk action reached it.
    services.proposal_review_confirm(proposal_id=second.id, analyst=analyst2)

    response = signed_in(analyst).post(
        reverse("confirm-review-bulk"),
        {"proposal": [first.id, second.id, third.id], "scope": "selected", "note": "checked"},
        follow=True,
    )

    assert response.status_code == 200
    said = _messages(response)
    assert "Confirmed 2." in said
    refused = [m for m in said if m.startswith("Refused 1:")]
    assert refused and "Block IP 203.0.113.2" in refused[0]
    assert "not yet reviewed" in refused[0]
    # Each its own audited confirmation, through the one service.
    confirmations = AuditEvent.objects.filter(event_type="proposal.review_confirmed")
    by_alice = {str(e.proposal_id) for e in confirmations.filter(actor="alice")}
    assert by_alice == {str(first.id), str(third.id)}
    assert all(e.data["note"] == "checked" for e in confirmations.filter(actor="alice"))
    second.refresh_from_db()
    assert second.reviewed_by == analyst2
    assert "0 ran without approval" in " ".join(
        signed_in(analyst).get(reverse("queue")).content.decode().split()
    ).replace("<strong>", "").replace("</strong>", "")


def test_confirm_all_shown_confirms_the_rows_the_page_listed_and_nothing_newer(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
) -> None:
    shown = [_auto(agent_with_key, f"203.0.113.{n}") for n in range(10, 14)]
    client = signed_in(analyst)
    page = client.get(reverse("lists")).content.decode()
    listed = re.findall(r'name="shown" value="([0-9a-f-]+)"', page)
    assert sorted(listed) == sorted(str(p.id) for p in shown)
    assert "Confirm all 4 shown" in page
    newer = _auto(agent_with_key, "203.0.113.99")  # ran after the page was read

    response = client.post(
        reverse("confirm-review-bulk"), {"scope": "shown", "shown": listed}, follow=True
    )

    assert "Confirmed 4." in _messages(response)
    assert Proposal.objects.filter(reviewed_at__isnull=False).count() == 4
    newer.refresh_from_db()
    assert newer.reviewed_at is None


@pytest.mark.parametrize(
    ("posted", "said"),
    [
        ({"scope": "selected"}, "No proposal was selected."),
        ({"scope": "selected", "proposal": ["not-an-id"]}, "'not-an-id' is not a proposal id."),
    ],
)
def test_bulk_confirm_with_bad_input_says_so_and_changes_nothing(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
    posted: dict[str, object],
    said: str,
) -> None:
    proposal = _auto(agent_with_key, "203.0.113.5")
    if "proposal" in posted:
        posted = {**posted, "proposal": [proposal.id, *posted["proposal"]]}  # type: ignore[list-item]

    response = signed_in(analyst).post(reverse("confirm-review-bulk"), posted, follow=True)

    assert said in _messages(response)
    proposal.refresh_from_db()
    assert proposal.reviewed_at is None
    assert not AuditEvent.objects.filter(event_type="proposal.review_confirmed").exists()


# --- failed executions: retry and acknowledge ------------------------------------------------


def test_acknowledge_from_the_list_moves_the_failed_counter_down(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
) -> None:
    first = _failed(agent_with_key, analyst, "broken-ws-1.corp.example")
    _failed(agent_with_key, analyst, "broken-ws-2.corp.example")
    client = signed_in(analyst)
    assert _failed_count(client) == 2
    assert 'id="failed-' + str(first.id) in client.get(reverse("lists")).content.decode()

    response = client.post(
        reverse("acknowledge-execution", args=[first.id]), headers={"HX-Request": "true"}
    )

    assert response.status_code == 204  # the page reloads with its message
    assert _failed_count(client) == 1
    page = client.get(reverse("lists")).content.decode()
    assert 'id="failed-' + str(first.id) not in page
    assert "Recently acknowledged (1)" in page
    first.refresh_from_db()
    assert first.status == ExecutionStatus.FAILED


def test_retry_from_the_list_queues_a_new_attempt_and_a_second_retry_is_refused(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
    analyst2: User,
) -> None:
    execution = _failed(agent_with_key, analyst, "broken-ws-3.corp.example")

    first = signed_in(analyst).post(reverse("retry-execution", args=[execution.id]), follow=True)
    second = signed_in(analyst2).post(
        reverse("retry-execution", args=[execution.id]), headers={"HX-Request": "true"}
    )

    assert "Retry queued: a new attempt runs now." in _messages(first)
    assert "another analyst retried it already" in second.content.decode()
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED
    assert AuditEvent.objects.filter(event_type="execution.retried").count() == 1


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("analyst", True), ("senior", True), ("admin", True), ("manager", False), ("none", False)],
)
def test_who_may_retry_acknowledge_and_confirm_in_bulk(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
    role: str,
    allowed: bool,
) -> None:
    roles = {
        "analyst": (factories.ANALYST,),
        "senior": (factories.SENIOR,),
        "admin": (factories.ADMIN,),
        "manager": (factories.MANAGER,),
        "none": (),
    }[role]
    client = signed_in(factories.user(f"who-{role}", *roles))
    retried = _failed(agent_with_key, analyst, "broken-ws-4.corp.example")
    acknowledged = _failed(agent_with_key, analyst, "broken-ws-5.corp.example")
    auto = _auto(agent_with_key, "203.0.113.44")

    answers = [
        client.post(reverse("retry-execution", args=[retried.id])),
        client.post(reverse("acknowledge-execution", args=[acknowledged.id])),
        client.post(reverse("confirm-review-bulk"), {"proposal": [auto.id]}),
    ]

    assert [a.status_code for a in answers] == ([302] * 3 if allowed else [403] * 3)
    retried.refresh_from_db()
    acknowledged.refresh_from_db()
    auto.refresh_from_db()
    assert (retried.status == ExecutionStatus.QUEUED) is allowed
    assert (acknowledged.acknowledged_at is not None) is allowed
    assert (auto.reviewed_at is not None) is allowed


def test_the_lists_page_offers_the_controls_only_to_those_who_may_use_them(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
    manager: User,
) -> None:
    _failed(agent_with_key, analyst, "broken-ws-6.corp.example")
    _auto(agent_with_key, "203.0.113.66")
    for user, shown in ((analyst, True), (manager, False)):
        page = signed_in(user).get(reverse("lists")).content.decode()
        for control in (">Retry<", ">Acknowledge<", "Confirm selected", 'type="checkbox"'):
            assert (control in page) is shown, (user.username, control)


# --- the Advisory and Blocked pages -----------------------------------------------------------


@pytest.fixture
def routed(agent_with_key: factories.AgentWithKey) -> dict[str, list[Proposal]]:
    other = factories.agent(
        "mail-bot",
        grants={"create_ticket": 1, "quarantine_email": 0, "block_ip": 2},
        required_evidence=["alert"],
    )
    advisory = [
        factories.proposal(agent_with_key, action="create_ticket", target=f"INC-{n}")
        for n in range(3)
    ] + [factories.proposal(other, action="create_ticket", target="INC-9")]
    blocked = [
        factories.proposal(agent_with_key, action="quarantine_email", target="eve@corp.example"),
        factories.proposal(other, action="quarantine_email", target="mal@corp.example"),
        factories.proposal(other, action="block_ip", target="8.8.8.8", evidence=[]),
    ]
    assert {p.status for p in advisory} == {"advisory"}
    assert {p.status for p in blocked} == {"blocked"}
    return {"advisory": advisory, "blocked": blocked}


def _rows(response: object) -> list[str]:
    page = response.content.decode()  # type: ignore[attr-defined]
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<code>([^<]+)</code></td><td>[0-9.]+</td>", body)


@pytest.mark.parametrize("role", ["analyst", "senior", "manager"])
def test_advisory_and_blocked_pages_list_their_proposals_with_the_routing_reason(
    request: pytest.FixtureRequest,
    signed_in: Callable[[User], Client],
    routed: dict[str, list[Proposal]],
    role: str,
) -> None:
    client = signed_in(request.getfixturevalue(role))
    advisory = client.get(reverse("advisory"))
    blocked = client.get(reverse("blocked"))

    assert advisory.status_code == blocked.status_code == 200
    assert sorted(_rows(advisory)) == ["INC-0", "INC-1", "INC-2", "INC-9"]
    assert sorted(_rows(blocked)) == ["8.8.8.8", "eve@corp.example", "mal@corp.example"]
    assert "advisory only (level 1): never executed" in advisory.content.decode()
    assert "action_not_permitted" in blocked.content.decode()
    nav = advisory.content.decode().split("</nav>", 1)[0]
    assert f'href="{reverse("advisory")}" aria-current="page"' in nav
    assert f'href="{reverse("blocked")}"' in nav


def test_filters_narrow_the_blocked_page(
    signed_in: Callable[[User], Client], routed: dict[str, list[Proposal]], analyst: User
) -> None:
    client = signed_in(analyst)
    url = reverse("blocked")
    assert sorted(_rows(client.get(url, {"agent": "triage-bot"}))) == ["eve@corp.example"]
    assert sorted(_rows(client.get(url, {"action": "block_ip"}))) == ["8.8.8.8"]
    by_code = client.get(url, {"reason": "action_not_permitted"})
    assert sorted(_rows(by_code)) == ["eve@corp.example", "mal@corp.example"]
    by_words = client.get(url, {"reason": "the proposal lacks evidence the policy requires"})
    assert _rows(by_words) == ["8.8.8.8"]
    today = timezone.localdate()
    assert len(_rows(client.get(url, {"since": today, "until": today}))) == 3
    tomorrow = today + timedelta(days=1)
    assert _rows(client.get(url, {"since": tomorrow})) == []
    yesterday = today - timedelta(days=1)
    assert _rows(client.get(url, {"until": yesterday})) == []


def test_pages_of_fifty_newest_first_keep_the_filters(
    signed_in: Callable[[User], Client], analyst: User
) -> None:
    # 53 proposals in a moment: this agent's circuit breaker is set above them.
    chatty = factories.agent(
        "ticket-bot", grants={"create_ticket": 1}, max_pending=1000, max_proposals_per_minute=1000
    )
    for n in range(53):
        factories.proposal(chatty, action="create_ticket", target=f"INC-{n:03}")
    client = signed_in(analyst)

    first = client.get(reverse("advisory"), {"agent": "ticket-bot"})
    second = client.get(reverse("advisory"), {"agent": "ticket-bot", "page": 2})

    assert len(_rows(first)) == 50 and _rows(first)[0] == "INC-052"
    assert _rows(second) == ["INC-002", "INC-001", "INC-000"]
    assert "page 1 of 2" in first.content.decode()
    assert 'href="?agent=ticket-bot&amp;page=2"' in first.content.decode()


@pytest.mark.parametrize(
    ("query", "field", "said"),
    [
        ({"agent": "nobody"}, "agent", "Agent: there is no agent 'nobody' here."),
        ({"action": "drop_tables"}, "action", "Action: there is no action 'drop_tables' here."),
        ({"reason": "because"}, "reason", "Reason: there is no reason 'because' here."),
        ({"since": "yesterday"}, "since", "From: 'yesterday' is not a date (YYYY-MM-DD)."),
        ({"until": "2025-02-30"}, "until", "To: '2025-02-30' is not a date (YYYY-MM-DD)."),
        (
            {"since": "2025-03-02", "until": "2025-03-01"},
            "until",
            "To: the end of the period comes before its start.",
        ),
    ],
)
def test_a_bad_filter_is_answered_inside_the_page_naming_the_field(
    signed_in: Callable[[User], Client],
    routed: dict[str, list[Proposal]],
    analyst: User,
    query: dict[str, str],
    field: str,
    said: str,
) -> None:
    response = signed_in(analyst).get(reverse("blocked"), query)

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'class="topbar"' in page  # inside the layout
    assert said.replace("'", "&#x27;") in page
    assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', page)
    assert "Nothing was listed." in page and "<tbody>" not in page


def test_advisory_and_blocked_pages_need_a_console_role(
    client: Client, signed_in: Callable[[User], Client]
) -> None:
    for name in ("advisory", "blocked"):
        assert client.get(reverse(name)).status_code == 302
        assert signed_in(factories.user(f"visitor-{name}")).get(reverse(name)).status_code == 403


def test_the_proposal_page_of_a_failed_execution_offers_retry_and_acknowledge(
    signed_in: Callable[[User], Client], agent_with_key: factories.AgentWithKey, analyst: User
) -> None:
    execution = _failed(agent_with_key, analyst, "broken-ws-8.corp.example")
    client = signed_in(analyst)
    url = reverse("proposal", args=[execution.proposal_id])
    page = client.get(url).content.decode()
    assert reverse("retry-execution", args=[execution.id]) in page
    assert reverse("acknowledge-execution", args=[execution.id]) in page
    # A retry runs the containment at once: the browser asks first, on this page and the list.
    assert 'hx-confirm="Run Isolate host on broken-ws-8.corp.example now?' in page
    listed = client.get(reverse("lists")).content.decode()
    row = listed.split(f'id="failed-{execution.id}"', 1)[1].split("</tr>", 1)[0]
    assert "<td>triage-bot</td>" in row  # which agent asked for it
    assert "now? It failed " in row and "a retry is a new attempt, started at once." in row

    services.execution_acknowledge(execution_id=execution.id, analyst=analyst)

    page = client.get(url).content.decode()
    assert reverse("acknowledge-execution", args=[execution.id]) not in page


def test_a_held_execution_is_cancelled_from_the_list_or_its_page_during_the_stop(
    signed_in: Callable[[User], Client],
    agent_with_key: factories.AgentWithKey,
    analyst: User,
    manager: User,
) -> None:
    proposal = factories.proposal(
        agent_with_key, action="isolate_host", target="ws-31.corp.example"
    )
    services.emergency_stop_engage(by=manager, reason="suspected compromise")
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
    execution = Execution.objects.get(proposal=proposal)
    assert execution.status == ExecutionStatus.HELD
    client = signed_in(analyst)
    cancel = reverse("cancel-held", args=[execution.id])

    listed = client.get(reverse("lists")).content.decode()
    assert "re-confirm after the stop is lifted" in listed
    assert f'action="{cancel}"' in listed  # cancelling runs nothing: offered during the stop
    assert 'hx-confirm="Cancel Isolate host on ws-31.corp.example? It will never run."' in listed
    page = client.get(reverse("proposal", args=[proposal.id])).content.decode()
    assert f'action="{cancel}"' in page and "or cancelled now" in page

    refused = client.post(cancel, {"reason": ""}, HTTP_HX_REQUEST="true")
    assert "Cancelling a held action needs a reason" in refused.content.decode()
    client.post(cancel, {"reason": "not while compromised"}, HTTP_HX_REQUEST="true")
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.CANCELLED
    assert f'action="{cancel}"' not in client.get(reverse("lists")).content.decode()
    event = AuditEvent.objects.get(event_type="execution.cancelled")
    assert event.actor == analyst.username and event.data["reason"] == "not while compromised"
