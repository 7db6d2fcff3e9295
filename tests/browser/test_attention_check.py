"""An analyst who approves an attention check is stopped at once and told what it got wrong."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals import services
from approvals.models import AttentionCheck, CheckFlaw, Execution
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_analyst_approving_a_check_sees_what_the_card_got_wrong(
    console: Callable[[User], Any], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    model = factories.proposal(agent_with_key, target="ws-0142.corp.example")
    services.proposal_reject(proposal_id=model.id, analyst=analyst, reason="benign")
    real = factories.proposal(agent_with_key, target="ws-0217.corp.example")
    check = services.attention_check_insert(
        team=None, model=model, flaw=CheckFlaw.OTHER_HOST, rng=random.Random(5)
    )
    assert check is not None
    page = console(analyst)
    card = page.locator(f"#card-{check.id}")
    expect(card).to_be_visible()
    expect(card).to_contain_text(agent_with_key.agent.slug)  # it looks like any other card

    card.locator("button.approve").click()

    flash = page.locator("#flash")
    expect(flash).to_contain_text("Stopped: this card was an attention check, and nothing was run.")
    expect(flash).to_contain_text("The rationale describes activity on")
    expect(card).to_have_count(0)
    expect(page.locator(f"#card-{real.id}")).to_be_visible()  # the real card stays
    assert AttentionCheck.objects.get(proposal=check).outcome == "missed"
    assert not Execution.objects.filter(proposal=check).exists()
