"""The shadow page (draft, score, promote, discard) and the readiness page `/agents/{slug}/`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agents.models import Policy, PolicyState
from agents.services import policy_shadow_start
from approvals import services
from audit import log
from audit.models import AuditEvent
from tests import factories

LIVE = {"block_ip": 2, "isolate_host": 3}


@pytest.fixture
def bot(db: None) -> factories.AgentWithKey:
    return factories.agent("page-bot", grants=LIVE, auto_threshold=0.9)


def _form(**changes: object) -> dict[str, object]:
    """The draft form as a manager sends it: the catalogue's actions, levels and budgets."""
    from agents import catalogue

    data: dict[str, object] = {"auto_threshold": "0.8", "review_threshold": "0.5"}
    for action in catalogue.ACTIONS:
        data[f"level_{action}"] = str(LIVE.get(action, 0))
        data[f"runs_{action}"] = "20"
        data[f"targets_{action}"] = "10"
    data.update(changes)
    return data


def test_the_draft_form_is_prefilled_from_the_live_policy_and_puts_a_shadow_in_place(
    signed_in: Callable[[User], Client], manager: User, bot: factories.AgentWithKey
) -> None:
    client = signed_in(manager)
    page = client.get("/agents/page-bot/shadow/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="level_block_ip"' in html
    assert page.context["form"].initial["level_isolate_host"] == 3
    assert page.context["form"].initial["auto_threshold"] == 0.9

    answer = client.post("/agents/page-bot/shadow/start/", _form(level_block_ip="3"))
    assert answer.status_code == 302
    shadow = bot.agent.policies.get(state=PolicyState.SHADOW)
    # Actions never granted and left at 0 stay absent.
    assert {g.action: g.level for g in shadow.grants.all()} == {"block_ip": 3, "isolate_host": 3}
    assert shadow.auto_threshold == 0.8
    event = AuditEvent.objects.get(event_type="policy.shadow_started")
    assert event.actor == "maya" and event.data["live_version"] == 1
    shown = client.get("/agents/page-bot/shadow/").content.decode()
    assert f"Version {shadow.version} in shadow" in shown
    assert "level of block_ip" in shown
    assert 'id="not-yet"' in shown  # no Promote before the minimum sample


def test_a_bad_draft_is_answered_with_the_form_and_changes_nothing(
    signed_in: Callable[[User], Client], manager: User, bot: factories.AgentWithKey
) -> None:
    client = signed_in(manager)
    answer = client.post(
        "/agents/page-bot/shadow/start/", _form(auto_threshold="0.4", review_threshold="0.6")
    )
    assert answer.status_code == 400
    assert "above the auto threshold" in answer.content.decode()
    answer = client.post("/agents/page-bot/shadow/start/", _form(level_block_ip="9"))
    assert answer.status_code == 400
    assert bot.agent.policies.count() == 1
    assert not AuditEvent.objects.filter(event_type="policy.shadow_started").exists()


def test_analysts_may_neither_read_nor_change_shadows(
    signed_in: Callable[[User], Client], analyst: User, bot: factories.AgentWithKey
) -> None:
    client = signed_in(analyst)
    assert client.get("/agents/page-bot/shadow/").status_code == 403
    assert client.post("/agents/page-bot/shadow/start/", _form()).status_code == 403
    assert client.get("/agents/page-bot/").status_code == 403
    assert bot.agent.policies.count() == 1


def test_promote_appears_with_the_sample_and_makes_the_shadow_live(
    signed_in: Callable[[User], Client],
    manager: User,
    analyst: User,
    bot: factories.AgentWithKey,
    settings,
) -> None:
    settings.SHADOW_MIN_SAMPLE = 3
    shadow = policy_shadow_start(agent=bot.agent, grants={"block_ip": 3}, by="maya")
    for n in range(3):
        p = factories.proposal(bot, action="block_ip", target=f"203.0.113.{n + 1}", confidence=0.95)
        services.proposal_approve(proposal_id=p.id, analyst=analyst, seconds_on_card=40)
    client = signed_in(manager)
    html = client.get("/agents/page-bot/shadow/").content.decode()
    assert 'id="promote"' in html
    assert "3 of 3 (100.0 %, 95 % CI 43.9–100.0 %)" in html  # agreement, Wilson 95 %
    assert "2.0 analyst minutes saved" in html
    answer = client.post("/agents/page-bot/shadow/promote/", {"version": shadow.version})
    assert answer.status_code == 302
    assert Policy.objects.get(pk=shadow.pk).state == PolicyState.PROMOTED
    assert bot.agent.current_policy.version == shadow.version + 1
    again = client.post(
        "/agents/page-bot/shadow/promote/", {"version": shadow.version}, follow=True
    )
    assert "no longer in shadow" in again.content.decode() or "not in shadow" in (
        again.content.decode()
    )


def test_readiness_page_shows_each_action_with_its_evidence(
    signed_in: Callable[[User], Client],
    manager: User,
    analyst: User,
    bot: factories.AgentWithKey,
) -> None:
    shadow = policy_shadow_start(agent=bot.agent, grants={"block_ip": 3}, by="maya")
    for n in range(4):
        p = factories.proposal(bot, action="block_ip", target=f"203.0.113.{n + 1}", confidence=0.95)
        services.proposal_reject(proposal_id=p.id, analyst=analyst, reason="benign scanner")
    demoted = log.record(
        event_type="grant.demoted",
        actor="system",
        data={
            "agent": "page-bot",
            "action": "isolate_host",
            "from_level": 3,
            "to_level": 2,
            "rule": "automatic_rollback",  # as the demotion service records it
            "evidence": {"proposal": "x", "analyst": "alice"},
            "policy_version": 2,
        },
    )
    page = signed_in(manager).get("/agents/page-bot/")
    assert page.status_code == 200
    html = page.content.decode()
    readiness = page.context["readiness"]
    by_action = {a.action: a for a in readiness.actions}
    assert set(by_action) == {"block_ip", "isolate_host"}
    block = by_action["block_ip"]
    assert block.level == 2 and block.shadow_level == 3
    assert block.record.decided == 4 and block.record.approved == 0
    assert block.calibration == [("0.9–1.0", 4, block.calibration[0][2])]
    assert str(block.calibration[0][2]) == "not enough data"  # 4 is under the minimum sample
    assert block.shadow.harm_avoided.count == 4
    assert block.verdict == "hold"
    assert block.sentence.startswith("Keep level 2: not enough data (4 decided by analysts")
    assert f"level 2 → 3 in version {shadow.version}" in html
    assert "harm avoided 4 of 4" in html
    isolate = by_action["isolate_host"]
    assert [d.seq for d in isolate.demotions] == [demoted.seq]
    assert f'href="/audit/events/{demoted.seq}/"' in html
    # The rule in words, never its code.
    assert "level 3 → 2: alice rolled back an automatic action, policy version 2" in html
    assert "automatic_rollback" not in html
    # A rate without enough data reads as such, not as a number in a sentence.
    assert "(not enough data of the finished ones" not in html
    assert "failure rate: not enough data" in html
    assert 'href="/agents/page-bot/shadow/"' in html
    assert "/reports/?report=trust&amp;agent=page-bot&amp;action=block_ip" in html
