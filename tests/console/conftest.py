from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agents.models import Criticality
from approvals.models import Proposal
from tests import factories


@pytest.fixture
def signed_in() -> Callable[[User], Client]:
    """A browser session for a user, as the console sees it after sign-in."""

    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def pending(agent_with_key: factories.AgentWithKey) -> Proposal:
    """An isolate_host proposal (level 2) waiting for one analyst."""
    proposal = factories.proposal(agent_with_key, target="ws-0142.corp.example", confidence=0.72)
    assert proposal.status == "pending"
    return proposal


@pytest.fixture
def critical_pending(agent_with_key: factories.AgentWithKey) -> Proposal:
    """A proposal on a critical asset: two approvers, the second a senior analyst."""
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    proposal = factories.proposal(agent_with_key, target="dc01.corp.example", confidence=0.8)
    assert proposal.status == "pending"
    assert proposal.required_approvals == 2
    return proposal
