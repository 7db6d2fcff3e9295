from __future__ import annotations

import random

import pytest

from approvals import catalogue, demo
from approvals.models import Proposal
from audit.history import seed_history

pytestmark = pytest.mark.django_db


def test_seeded_history_only_holds_proposals_the_api_would_have_accepted() -> None:
    demo.ensure_users()
    demo.ensure_agents()
    demo.ensure_assets()
    created = seed_history(weeks=1, rng=random.Random(5))
    assert created > 50
    for action, target in Proposal.objects.values_list("action", "target"):
        kind = catalogue.get(action)
        assert kind is not None
        try:
            kind.clean_target(target)
        except catalogue.TargetError as exc:
            pytest.fail(f"{action} {target}: {exc}")
