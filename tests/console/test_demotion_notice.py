"""A demotion as analysts and managers see it: a notice on every open console, the agents
page's history with its evidence."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from approvals import services, tasks
from audit.models import AuditEvent
from tests import factories
from tests.console.test_live import ORIGIN, _cookie, _receive_until, _socket
from tests.event_loop import run_scenario

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _rolled_back_automatic_action(analyst: User) -> AuditEvent:
    bot = factories.agent("edr-bot", grants={"block_ip": 3})
    proposal = factories.proposal(bot, action="block_ip", target="203.0.113.5", confidence=0.97)
    tasks.run_execution(str(proposal.execution.id))
    queued = factories.proposal(bot, action="block_ip", target="203.0.113.6", confidence=0.97)
    services.rollback_request(
        execution_id=proposal.execution.id, analyst=analyst, reason="our own scanner"
    )
    event = AuditEvent.objects.get(event_type="grant.demoted")
    assert event.data["held_executions"] == [str(queued.execution.id)]
    return event


def test_every_console_is_told_at_once_when_a_grant_is_demoted(analyst: User) -> None:
    cookie = _cookie(analyst)

    async def scenario() -> None:
        socket = _socket(ORIGIN, cookie)
        assert (await socket.connect())[0]
        event = await sync_to_async(_rolled_back_automatic_action)(analyst)
        html = await _receive_until(socket, lambda m: "demotion-notice" in m)
        assert 'hx-swap-oob="afterbegin:#demotion-notices"' in html
        assert "edr-bot lost autonomy on block_ip" in html
        assert "level 3 → 2 (policy v2)" in html
        assert "alice rolled back an automatic action" in html
        assert "1 queued automatic action held for re-confirmation" in html
        assert f'href="/audit/events/{event.seq}/"' in html
        await socket.disconnect()

    run_scenario(scenario)


def test_the_agents_page_shows_the_demotion_with_its_evidence_and_the_rules(
    analyst: User, signed_in: Callable[[User], Client]
) -> None:
    event = _rolled_back_automatic_action(analyst)
    page = signed_in(analyst).get(reverse("agents"))
    html = page.content.decode()
    assert "Demoted automatically" in html
    assert "block_ip: level 3 → 2 in v2" in html
    assert "alice rolled back an automatic action" in html
    assert "1 queued automatic action held" in html
    assert f'href="/audit/events/{event.seq}/"' in html
    assert "Promotion back is never automatic" in html
    # The demoted grant has nothing left to lose; a level-3 grant states its rules.
    factories.agent("triage-bot", grants={"kill_process": 3})
    html = signed_in(analyst).get(reverse("agents")).content.decode()
    assert (
        "to level 2 on: more than 25 % of the last 20 executions failed or rolled back; "
        "a rejection at or above the auto threshold; a rollback of an automatic action"
    ) in html
