from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User

from approvals import services
from approvals.models import Execution, Proposal
from tests import factories

# Level 2 everywhere: a human approves, then the engine runs it.
RESPONDER_GRANTS = {
    "block_ip": 2,
    "isolate_host": 2,
    "disable_user": 2,
    "reset_password": 2,
    "kill_process": 2,
    "create_ticket": 2,
}


@pytest.fixture
def responder(db: None) -> factories.AgentWithKey:
    return factories.agent("responder", grants=RESPONDER_GRANTS)


def approved(
    owner: factories.AgentWithKey, analyst: User, *, action: str, target: str, **extra: Any
) -> Execution:
    """Submit a proposal, approve it, and return its queued execution."""
    proposal: Proposal = factories.proposal(owner, action=action, target=target, **extra)
    assert proposal.status == "pending", proposal.routing_explanation
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst, reason="confirmed")
    return Execution.objects.get(proposal=proposal)


def broker_messages(queue: str | None = None) -> list[dict[str, Any]]:
    """The task messages waiting in one of the test broker's queues (the executions' by
    default), decoded: task name and args."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    messages = []
    # Producers push on the left and workers pop on the right: oldest last, so reverse.
    for raw in reversed(client.lrange(queue or settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)):
        envelope = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        messages.append({"task": envelope["headers"]["task"], "args": args})
    return messages
