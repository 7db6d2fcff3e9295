"""The queue's filters: the page the server renders for a filter, and the data attributes by
which the page's script applies the same filter to live cards."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import Client
from django.utils import timezone

from agents.models import Criticality
from approvals import selectors, services
from approvals.models import Proposal
from tests import factories

pytestmark = pytest.mark.django_db


def _ids(page: str) -> set[str]:
    return set(re.findall(r'<article id="card-([0-9a-f-]+)"', page))


def test_each_filter_narrows_the_page_the_server_renders(
    signed_in: Callable[[User], Client],
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    other = factories.agent("mail-bot", grants={"block_ip": 2, "isolate_host": 2})
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    host = factories.proposal(agent_with_key, target="ws-0142.corp.example")
    ip = factories.proposal(other, action="block_ip", target="203.0.113.7")
    critical = factories.proposal(other, target="dc01.corp.example")
    services.proposal_approve(proposal_id=critical.id, analyst=analyst2)
    Proposal.objects.filter(pk=host.pk).update(escalated_at=timezone.now())
    client = signed_in(analyst)

    def shown(query: str) -> set[str]:
        return _ids(client.get(f"/?{query}").content.decode())

    everything = {str(p.id) for p in (host, ip, critical)}
    assert shown("") == everything
    assert shown("agent=mail-bot") == {str(ip.id), str(critical.id)}
    assert shown("action=block_ip") == {str(ip.id)}
    assert shown("target=WS-0142") == {str(host.id)}
    assert shown("target=203.0.113") == {str(ip.id)}
    assert shown("escalated=1") == {str(host.id)}
    assert shown("awaiting_senior=1") == {str(critical.id)}
    assert shown("severity=high") == everything
    assert shown("severity=low") == set()
    assert shown("agent=mail-bot&awaiting_senior=1") == {str(critical.id)}


def test_a_filter_value_that_names_nothing_is_dropped_and_the_page_says_so(
    signed_in: Callable[[User], Client], analyst: User, pending: Proposal
) -> None:
    page = signed_in(analyst).get("/?action=nuke_site&severity=apocalyptic").content.decode()
    assert "No action is called &#x27;nuke_site&#x27;; that filter is off." in page
    assert "Severity is one of" in page and "that filter is off." in page
    assert _ids(page) == {str(pending.id)}


def test_every_card_carries_what_the_filter_reads(
    analyst: User, analyst2: User, agent_with_key: factories.AgentWithKey
) -> None:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    critical = factories.proposal(agent_with_key, target="DC01.corp.example")
    services.proposal_approve(proposal_id=critical.id, analyst=analyst2)
    card = selectors.pending_queue()[0]
    assert card.awaiting_senior
    html = render_to_string("approvals/card.html", {"card": card})
    assert 'data-agent="triage-bot"' in html and 'data-action="isolate_host"' in html
    assert 'data-target="dc01.corp.example dc01.corp.example"' in html
    assert 'data-severity="high"' in html and 'data-escalated=""' in html
    assert 'data-awaiting-senior="1"' in html
    query = selectors.QueueFilter(awaiting_senior=True).query()
    assert list(Proposal.objects.filter(query)) == [critical]
