from __future__ import annotations

import random

import pytest

from agents import catalogue
from approvals import demo
from approvals.demo.history import seed_history
from approvals.models import Proposal

pytestmark = pytest.mark.django_db


def test_seeded_history_only_holds_proposals_the_api_would_have_accepted() -> None:
    demo.ensure_users()
    demo.ensure_agents()
    demo.ensure_assets()
    created = seed_history(weeks=1, rng=random.Random(5))
    assert created > 50
    rows = Proposal.objects.values_list("action", "target", "target_canonical")
    for action, target, canonical in rows:
        kind = catalogue.get(action)
        assert kind is not None
        try:
            identity = kind.clean_target(target)
        except catalogue.TargetError as exc:
            pytest.fail(f"{action} {target}: {exc}")
        assert canonical == identity.value
