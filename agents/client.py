"""A small typed client for agent authors. Needs only httpx; no Django.

client = AgentClient("http://127.0.0.1:8000", api_key)
result = client.propose(action="block_ip", target="203.0.113.7", confidence=0.82,
                        rationale="…", evidence=[{"kind": "alert", "ref": "SIEM-4821"}])
if result.status == 201: ...
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ApiResult:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def proposal(self) -> dict[str, Any] | None:
        """The proposal, for a 200/201 answer or a 403 that recorded it as blocked."""
        if self.ok and "id" in self.body:
            return self.body
        return self.body.get("proposal")

    @property
    def code(self) -> str | None:
        return self.body.get("code")


class AgentClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _result(response: httpx.Response) -> ApiResult:
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text}
        return ApiResult(response.status_code, body, dict(response.headers))

    def propose(
        self,
        *,
        action: str,
        target: str,
        confidence: float,
        rationale: str,
        evidence: list[dict[str, str]] | None = None,
        params: dict[str, Any] | None = None,
        severity: str = "medium",
        idempotency_key: str | None = None,
    ) -> ApiResult:
        body: dict[str, Any] = {
            "action": action,
            "target": target,
            "confidence": confidence,
            "rationale": rationale,
            "severity": severity,
        }
        if evidence is not None:
            body["evidence"] = evidence
        if params is not None:
            body["params"] = params
        key = idempotency_key or uuid.uuid4().hex
        return self._result(
            self._http.post("/api/v1/proposals/", json=body, headers={"Idempotency-Key": key})
        )

    def post_raw(self, body: Any, *, idempotency_key: str | None = None) -> ApiResult:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._result(self._http.post("/api/v1/proposals/", json=body, headers=headers))

    def get(self, proposal_id: str) -> ApiResult:
        return self._result(self._http.get(f"/api/v1/proposals/{proposal_id}/"))

    def list(self, *, status: str | None = None, page: int = 1) -> ApiResult:
        params: dict[str, Any] = {"page": page}
        if status:
            params["status"] = status
        return self._result(self._http.get("/api/v1/proposals/", params=params))

    def withdraw(self, proposal_id: str) -> ApiResult:
        return self._result(self._http.post(f"/api/v1/proposals/{proposal_id}/withdraw/"))
