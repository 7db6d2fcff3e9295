"""Proposals the browser tests' agents post through the agent API, as an outside agent does."""

from __future__ import annotations

from typing import Any

from agents.client import AgentClient
from tests import factories


def propose(
    url: str,
    agent: factories.AgentWithKey,
    target: str,
    *,
    expect: str | None = None,
    **fields: Any,
) -> str:
    """Post a proposal on `target` as `agent` to the server at `url` and return its id.

    An isolation with a mid confidence unless `fields` say otherwise; the answer must be a 201,
    and with `expect`, the proposal's status must be that (the tests that watch a card arrive
    need it pending).
    """
    body = {
        "action": "isolate_host",
        "confidence": 0.7,
        "rationale": "Beaconing to a domain registered yesterday.",
        "evidence": [{"kind": "alert", "ref": "SIEM-4821"}],
        "severity": "high",
        **fields,
    }
    with AgentClient(url, agent.raw_key) as client:
        result = client.propose(target=target, **body)
    assert result.status == 201, result.body
    if expect is not None:
        assert result.body["status"] == expect, result.body
    return str(result.body["id"])
