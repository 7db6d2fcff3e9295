"""Test data, built through the same services the product uses."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from agents.models import Agent, Asset
from agents.services import agent_register, asset_save
from approvals import live, services
from approvals.models import Proposal
from soc_console.roles import ADMIN, ANALYST, MANAGER, SENIOR

__all__ = [
    "ADMIN",
    "ANALYST",
    "MANAGER",
    "SENIOR",
    "AgentWithKey",
    "agent",
    "agent_client",
    "post_proposal",
    "user",
]


def user(username: str, *roles: str, password: str = "pass-for-tests") -> User:
    account = User.objects.create_user(
        username=username, password=password, email=f"{username}@soc.example"
    )
    for role in roles:
        account.groups.add(Group.objects.get_or_create(name=role)[0])
    return account


@dataclass
class AgentWithKey:
    agent: Agent
    raw_key: str


def agent(slug: str, *, grants: dict[str, int], **policy: Any) -> AgentWithKey:
    registered, issued = agent_register(slug=slug, by="tests", grants=grants, **policy)
    return AgentWithKey(registered, issued.raw)


def agent_client(raw_key: str) -> APIClient:
    """An API client that speaks as the agent holding this key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def post_proposal(
    client: APIClient,
    action: str,
    target: str,
    *,
    confidence: float = 0.95,
    rationale: str = "Contain it.",
) -> Any:
    """POST one proposal as an agent would send it, with a fresh idempotency key."""
    body = {
        "action": action,
        "target": target,
        "confidence": confidence,
        "rationale": rationale,
        "evidence": [{"kind": "alert", "ref": "SIEM-1"}],
    }
    return client.post(
        "/api/v1/proposals/",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )


def asset(
    identifier: str,
    *,
    kind: str = "host",
    criticality: str = "medium",
    group: str = "",
    aliases: tuple[str, ...] = (),
) -> Asset:
    return asset_save(
        asset=Asset(kind=kind, identifier=identifier, criticality=criticality, group=group),
        by="tests",
        aliases=aliases,
    )


def proposal(
    owner: AgentWithKey | Agent,
    *,
    action: str = "isolate_host",
    target: str = "ws-0001.corp.example",
    confidence: float = 0.7,
    rationale: str = "Beaconing to a known C2 domain every 60 s.",
    evidence: list[dict[str, str]] | None = None,
    params: dict[str, Any] | None = None,
    settle: bool = True,
) -> Proposal:
    the_agent = owner.agent if isinstance(owner, AgentWithKey) else owner
    submitted = services.proposal_submit(
        agent=the_agent,
        api_key=None,
        action=action,
        target=target,
        params=params or {},
        confidence=confidence,
        rationale=rationale,
        evidence=evidence if evidence is not None else [{"kind": "alert", "ref": "SIEM-1"}],
        severity="high",
        idempotency_key=uuid.uuid4().hex,
        request_hash=uuid.uuid4().hex,
    ).proposal
    # Its arrival goes out to the consoles on a background thread; let that finish, so a test
    # that listens next hears only what it caused (unless the test wants a burst).
    if settle:
        live.wait_idle()
    return submitted
