"""Every answer under /api/v1/ that is an error is application/problem+json, whichever layer gives
it; a body over API_MAX_BODY_BYTES is a 413 before anything reads it; a committed decision is
answered 201 even when the database goes away right after the commit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from approvals.models import Decision, Execution, Proposal
from audit.models import AuditEvent
from soc_console.asgi import application
from tests import factories
from tests.api.test_proposals_api import BODY


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"] and problem["code"]
    return problem


# --- Django's own answers, rewritten -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here/",
        "/api/v1/proposals/not-a-uuid/",
        "/api/v1/proposals/%0A/",
        "/api/v1/%0A",
        "/api/v1/proposals%0D%0Ax/",
        "/api/v1/%00",
        "/api/v1/%FF%FE/",
    ],
)
def test_odd_paths_are_404_problems(client: Any, path: str) -> None:
    assert_problem(client.get(path), 404)


@pytest.mark.django_db
def test_a_disallowed_host_is_a_400_problem_that_says_so(client: Any) -> None:
    problem = assert_problem(client.get("/api/v1/proposals/", HTTP_HOST="evil.example"), 400)
    assert problem["code"] == "host_not_allowed"
    assert (
        "The Host header 'evil.example' names no host this console answers to"
        in (problem["detail"])
    )


@pytest.mark.django_db
def test_a_method_the_endpoint_does_not_take_is_a_405_problem(api: APIClient) -> None:
    problem = assert_problem(api.delete("/api/v1/proposals/"), 405)
    assert "DELETE" in problem["detail"]


@pytest.mark.django_db
def test_a_wrong_content_type_is_a_415_problem(api: APIClient) -> None:
    response = api.post("/api/v1/proposals/", data="action=block_ip", content_type="text/plain")
    assert_problem(response, 415)


@pytest.mark.django_db
def test_a_session_user_without_the_csrf_token_gets_a_403_problem(analyst: Any) -> None:
    proposal = factories.proposal(factories.agent("bot", grants={"isolate_host": 2}))
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(analyst)
    response = client.post(
        f"/api/v1/proposals/{proposal.pk}/decisions/", {"verdict": "approve"}, format="json"
    )
    problem = assert_problem(response, 403)
    assert "CSRF" in problem["detail"]
    assert not Decision.objects.exists()


# --- the body limit, in front of Django (the ASGI application as the server runs it) ------------


async def _asgi(
    *, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes] | None
) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """One request through soc_console.asgi.application; returns the status, headers, body and
    how many body bytes the application pulled. With `chunks` None, reading the body fails."""
    pulled = 0
    pending = list(chunks or [])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if chunks is None:
            raise AssertionError("the application read a body it should have refused unread")
        if pending:
            chunk = pending.pop(0)
            pulled += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await asyncio.sleep(3600)  # no disconnect while the answer is being made
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    await asyncio.wait_for(application(scope, receive, send), timeout=20)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {name.lower(): value for name, value in start["headers"]}
    return start["status"], headers, body, pulled


def test_a_declared_body_over_the_limit_is_413_unread_and_before_authentication(
    settings: Any,
) -> None:
    settings.API_MAX_BODY_BYTES = 2048
    status, headers, body, _ = asyncio.run(
        _asgi(
            path="/api/v1/proposals/",
            headers=[(b"content-type", b"application/json"), (b"content-length", b"300000000")],
            chunks=None,  # any read fails the test
        )
    )
    assert status == 413
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"connection"] == b"close"  # the server stops reading the connection
    problem = json.loads(body)
    assert problem["code"] == "too_large"
    assert problem["errors"] == {"body": ["At most 2048 bytes."]}
    assert "300000000" in problem["detail"]


def test_a_chunked_body_over_the_limit_is_read_only_up_to_the_limit(settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 2048
    chunks = [b"x" * 1000] * 50  # 50 kB, no Content-Length
    status, _, body, pulled = asyncio.run(
        _asgi(
            path="/api/v1/proposals/", headers=[(b"transfer-encoding", b"chunked")], chunks=chunks
        )
    )
    assert status == 413
    assert json.loads(body)["code"] == "too_large"
    assert pulled == 3000  # the limit and one more byte, in the chunks they came in


def test_a_chunked_body_within_the_limit_reaches_the_api_whole(settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 2048
    text = b'{"not": "authenticated"}'
    status, headers, body, pulled = asyncio.run(
        _asgi(
            path="/api/v1/proposals/",
            headers=[(b"content-type", b"application/json")],
            chunks=[text[:10], text[10:]],
        )
    )
    assert pulled == len(text)
    assert status == 401  # the body went on to Django, which asked for a key
    assert headers[b"content-type"] == b"application/problem+json"


def test_the_limit_is_the_apis_alone(settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 2048
    status, _, _, _ = asyncio.run(
        _asgi(
            path="/accounts/login/",
            headers=[(b"content-length", b"4000")],
            chunks=[b"x" * 4000],
        )
    )
    assert status != 413  # the console's forms are not the agent API


# --- a committed decision stands, and is answered as committed --------------------------------


def _terminate(backend: int) -> None:
    """End a PostgreSQL session from another one, as a restart or a failover does."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [backend])


def _drop_after_commit(statement: str) -> tuple[Any, list[int]]:
    """An execute wrapper that, once `statement` runs in a transaction, has PostgreSQL terminate
    this connection's session as soon as that transaction commits: every query after the
    commit meets a dead connection, as after a database restart or a failover."""
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    dropped: list[int] = []

    def terminate() -> None:
        _terminate(backend)
        dropped.append(backend)

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not dropped and sql.startswith(statement) and connection.in_atomic_block:
            transaction.on_commit(terminate)
        return execute(sql, params, many, context)

    return wrapper, dropped


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("verdict", ["approve", "reject"])
def test_a_decision_is_201_with_what_committed_when_the_database_drops_after_commit(
    analyst: Any, verdict: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = factories.agent("bot", grants={"block_ip": 2})
    proposal = factories.proposal(owner, action="block_ip", target="203.0.113.9")
    client = APIClient()
    client.force_authenticate(analyst)
    wrapper, dropped = _drop_after_commit('INSERT INTO "approvals_decision"')

    with connection.execute_wrapper(wrapper):
        response = client.post(
            f"/api/v1/proposals/{proposal.pk}/decisions/",
            {"verdict": verdict, "reason": "seen it in the SIEM"},
            format="json",
        )

    assert dropped, "the connection was not dropped after the commit"
    assert response.status_code == 201, response.content
    assert "could not be read back" in caplog.text  # the answer came from the written copy
    answered = response.json()
    expected = "approved" if verdict == "approve" else "rejected"
    assert answered["status"] == expected
    assert [(d["verdict"], d["analyst"]) for d in answered["decisions"]] == [(verdict, "alice")]
    # What the answer says is what committed.
    connection.close()
    proposal.refresh_from_db()
    assert proposal.status == expected
    assert Decision.objects.filter(proposal=proposal).count() == 1
    assert AuditEvent.objects.filter(event_type=f"proposal.{expected}").count() == 1
    if verdict == "approve":
        execution = Execution.objects.get(proposal=proposal)
        assert answered["execution"]["id"] == str(execution.id)
        assert answered["execution"]["status"] == "queued"
    else:
        assert answered["execution"] is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_decision_on_an_inventoried_asset_is_answered_with_its_asset_after_the_drop(
    analyst: Any,
) -> None:
    factories.asset("203.0.113.9", kind="ip", criticality="high")
    owner = factories.agent("bot", grants={"block_ip": 2})
    proposal = factories.proposal(owner, action="block_ip", target="203.0.113.9")
    client = APIClient()
    client.force_authenticate(analyst)
    wrapper, dropped = _drop_after_commit('INSERT INTO "approvals_decision"')

    with connection.execute_wrapper(wrapper):
        response = client.post(
            f"/api/v1/proposals/{proposal.pk}/decisions/",
            {"verdict": "approve", "reason": "seen it in the SIEM"},
            format="json",
        )

    assert dropped
    assert response.status_code == 201, response.content
    assert response.json()["asset"] == {"identifier": "203.0.113.9", "criticality": "high"}
    connection.close()  # the session was ended: the next query opens a new one


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_is_answered_as_committed_when_the_database_drops(api: APIClient) -> None:
    submitted = api.post(
        "/api/v1/proposals/", json.dumps(BODY), content_type="application/json"
    ).json()
    wrapper, dropped = _drop_after_commit('UPDATE "approvals_proposal"')

    with connection.execute_wrapper(wrapper):
        response = api.post(f"/api/v1/proposals/{submitted['id']}/withdraw/")

    assert dropped
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "withdrawn"
    connection.close()
    assert Proposal.objects.get(pk=submitted["id"]).status == "withdrawn"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_database_gone_mid_request_is_a_503_problem_with_retry_after(api: APIClient) -> None:
    connection.ensure_connection()
    _terminate(connection.connection.info.backend_pid)

    response = api.post("/api/v1/proposals/", json.dumps(BODY), content_type="application/json")

    problem = assert_problem(response, 503)
    assert problem["code"] == "unavailable"
    assert int(response["Retry-After"]) >= 1
    connection.close()
    assert not Proposal.objects.exists()
