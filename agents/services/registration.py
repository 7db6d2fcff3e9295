"""An agent's registration (first policy version and key) and where it hears back."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction

from audit import log

from ..models import Agent
from .apikeys import IssuedKey, apikey_issue
from .policies import policy_publish


@transaction.atomic
def agent_register(
    *,
    slug: str,
    by: str,
    name: str = "",
    description: str = "",
    grants: dict[str, int] | None = None,
    budgets: dict[str, tuple[int, int]] | None = None,
    demotions: dict[str, dict[str, Any]] | None = None,
    **policy_fields: Any,
) -> tuple[Agent, IssuedKey]:
    """Register an agent with its first policy version and its first API key."""
    agent = Agent.objects.create(slug=slug, name=name or slug, description=description)
    log.record(event_type="agent.registered", actor=by, data={"agent": slug})
    policy_publish(
        agent=agent,
        grants=grants or {},
        budgets=budgets,
        demotions=demotions,
        by=by,
        **policy_fields,
    )
    issued = apikey_issue(agent=agent, by=by, label="initial")
    return agent, issued


@transaction.atomic
def agent_set_callback(*, agent: Agent, url: str, by: str) -> str:
    """Register (or clear, with "") where the agent hears about decisions and completions.

    Returns the new HMAC secret for the callbacks' signatures, shown once; "" when cleared.
    """
    secret = secrets.token_hex(32) if url else ""
    Agent.objects.filter(pk=agent.pk).update(callback_url=url, callback_secret=secret)
    log.record(
        event_type="agent.callback_set",
        actor=by,
        actor_type="agent" if by == agent.slug else "user",
        data={"agent": agent.slug, "callback_url": url},
    )
    return secret
