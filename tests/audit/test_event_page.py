"""Each audit event has a page a person can read: who, what, when, the data (before and after
where the event or the chain says what it was), and its place in the chain."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from agents.services import asset_save, policy_publish
from approvals import services
from audit.models import AuditEvent
from audit.verify import verify_and_record
from tests import factories

pytestmark = pytest.mark.django_db


def _page(client: Client, event: AuditEvent) -> str:
    response = client.get(reverse("audit-event", args=[event.seq]))
    assert response.status_code == 200
    return response.content.decode()


def _row(html: str, key: str) -> list[str]:
    """The cells (label, before, after) of one entry of the before/after table."""
    row = re.search(rf'<tr id="data-{key}"[^>]*>(.*?)</tr>', html, re.S).group(1)
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
    ]


def test_an_asset_criticality_change_shows_before_and_after(client: Client, manager) -> None:
    asset = factories.asset("db-prod01.corp.example", criticality="medium")
    asset.criticality = "critical"
    asset_save(asset=asset, by="maya")
    event = AuditEvent.objects.filter(event_type="asset.saved").order_by("-seq").first()
    client.force_login(manager)
    html = _page(client, event)
    assert f"Event #{event.seq}: Asset saved" in html
    assert re.search(r"<dt>Who</dt><dd[^>]*>maya", html)
    assert _row(html, "criticality") == ["Criticality changed", "medium", "critical"]
    assert 'id="data-criticality" class="changed"' in html
    assert 'id="data-identifier" class="changed"' not in html
    assert "db-prod01.corp.example" in html


def test_a_policy_version_shows_what_it_changed_from_the_version_before(
    client: Client, manager, agent_with_key
) -> None:
    policy_publish(agent=agent_with_key.agent, by="maya", auto_threshold=0.95)
    first, second = AuditEvent.objects.filter(event_type="policy.published").order_by("seq")
    client.force_login(manager)
    html = _page(client, second)
    label, before, after = _row(html, "auto_threshold")
    assert (before, after) == (str(first.data["auto_threshold"]), "0.95")
    assert label.endswith("changed")
    assert _row(html, "agent") == ["Agent", "triage-bot", "triage-bot"]
    # The "before" names the event it was read from.
    assert reverse("audit-event", args=[first.seq]) in html
    # The first version replaced nothing: its data is a plain list.
    assert 'id="event-data-list"' in _page(client, first)


def test_a_proposal_event_links_its_proposal_neighbours_and_chain(
    client: Client, manager, analyst, agent_with_key
) -> None:
    proposal = factories.proposal(agent_with_key, target="ws-0100.corp.example")
    services.proposal_reject(proposal_id=proposal.pk, analyst=analyst, reason="<b>benign</b>")
    event = AuditEvent.objects.get(event_type="proposal.rejected")
    before = AuditEvent.objects.filter(seq__lt=event.seq).order_by("-seq").first()
    client.force_login(manager)
    html = _page(client, event)
    assert "Proposal rejected" in html and "(person)" in html
    assert f'href="{reverse("proposal", args=[proposal.pk])}"' in html
    assert f'rel="prev" href="{reverse("audit-event", args=[before.seq])}"' in html
    assert "Last event of the chain" in html
    assert event.prev_hash == before.hash and event.prev_hash in html and event.hash in html
    # Data is text, never markup.
    assert "&lt;b&gt;benign&lt;/b&gt;" in html and "<b>benign</b>" not in html
    assert "never been verified" in html


def test_the_page_says_whether_the_last_verification_covered_the_event(
    client: Client, manager, agent_with_key
) -> None:
    factories.proposal(agent_with_key, target="ws-0101.corp.example")
    covered = AuditEvent.objects.order_by("-seq").first()
    assert verify_and_record().ok
    factories.proposal(agent_with_key, target="ws-0102.corp.example")
    later = AuditEvent.objects.order_by("-seq").first()
    client.force_login(manager)
    assert re.search(
        r'class="coverage tone-good">Covered by the verification', _page(client, covered)
    )
    assert re.search(
        r'class="coverage tone-neutral">Recorded after the last verification', _page(client, later)
    )


def test_the_audit_list_links_each_row_to_its_event_instead_of_raw_json(
    client: Client, manager, agent_with_key
) -> None:
    factories.proposal(agent_with_key, target="ws-0103.corp.example")
    client.force_login(manager)
    html = client.get(reverse("audit")).content.decode()
    for seq in AuditEvent.objects.values_list("seq", flat=True):
        assert f'href="{reverse("audit-event", args=[seq])}"' in html
    assert "Proposal submitted and routed by the policy" in html
    assert "{&quot;" not in html  # no JSON in the list


def test_an_unknown_event_is_404(client: Client, manager) -> None:
    client.force_login(manager)
    assert client.get(reverse("audit-event", args=[999999])).status_code == 404


@pytest.mark.parametrize(
    ("query", "name", "field"),
    [
        ({"since": "2026-02-30"}, "since", "From"),
        ({"until": "yesterday"}, "until", "Until"),
        ({"proposal": "not-a-uuid"}, "proposal", "Proposal"),
    ],
)
def test_a_bad_audit_filter_shows_the_form_again_with_the_field_marked(
    client: Client, manager, agent_with_key, query: dict, name: str, field: str
) -> None:
    factories.proposal(agent_with_key, target="ws-0104.corp.example")
    client.force_login(manager)
    for url in (reverse("audit"), reverse("audit-export")):
        response = client.get(url, query)
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/html")
        html = response.content.decode()
        assert 'aria-label="Main"' in html  # inside the layout
        assert f"Bad filter: {field}</h2>" in html
        tag = re.search(rf'<input name="{name}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in tag and f'aria-describedby="err-{name}"' in tag
        assert f'value="{query[name]}"' in tag  # what was sent, as typed
        assert re.search(rf'<span class="field-error" id="err-{name}">[^<]+</span>', html)
        assert html.count('aria-invalid="true"') == 1
        assert "audit-table" not in html  # no events were read
