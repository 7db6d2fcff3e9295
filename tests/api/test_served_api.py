"""The API as the web server serves it (soc_console.serve, uvicorn, the ASGI application): a huge
body is refused before it is read or stored, a chunked one is read no further than the limit,
and whatever the path and method, an error is a problem+json answer, never HTML or a 500."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals.models import Proposal
from tests import factories, processes

LIMIT = 65536


@dataclass
class Served:
    url: str
    port: int
    process: processes.ManagedProcess
    spool: Path  # the server's TMPDIR: where Django would spool a body

    def worker(self) -> int:
        """The uvicorn worker process serving the requests."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.process.pid and b"resource_tracker" not in cmdline:
                return int(entry.name)
        raise AssertionError("no worker process")

    def spooled(self, pid: int) -> list[str]:
        """Files in the spool directory, and the worker's open files there (deleted or not)."""
        found = [path.name for path in self.spool.iterdir()]
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(self.spool)):
                found.append(target)
        return found


def _io(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    return {name: int(value) for name, value in (line.split(": ") for line in lines)}


@pytest.fixture(scope="module")
def served(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with django_db_blocker.unblock():
        environment = processes.shared_environment()
    spool = tmp_path_factory.mktemp("spool")
    process, url = processes.start_web(
        environment,
        log_dir=tmp_path_factory.mktemp("web"),
        TMPDIR=str(spool),
        API_MAX_BODY_BYTES=str(LIMIT),
        LOG_LEVEL="WARNING",
    )
    try:
        yield Served(url=url, port=int(url.rsplit(":", 1)[1]), process=process, spool=spool)
    finally:
        process.stop()


def _send_slowly_and_listen(
    port: int, head: bytes, chunk: bytes, *, seconds: float
) -> tuple[bytes, float, int]:
    """Send `head`, then `chunk` every 20 ms for up to `seconds`, reading whatever the server
    answers meanwhile. Returns the answer, when it was complete (s after the head) and how
    many body bytes went out."""
    answer = b""
    sent = 0
    answered_at = float("inf")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        began = time.monotonic()
        sending = True
        while time.monotonic() - began < seconds:
            readable, _, _ = select.select([sock], [], [], 0.02)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    break  # the server closed the connection
                answer += data
                if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                    answered_at = min(answered_at, time.monotonic() - began)
            elif sending:
                try:
                    sock.sendall(chunk)
                    sent += len(chunk)
                except OSError:
                    sending = False  # refused: the server stopped reading
    return answer, answered_at, sent


def _problem(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize("authorization", ["", "Authorization: Bearer soc_nope_nope\r\n"])
def test_a_300_mb_body_is_refused_at_once_unread_and_unstored(
    served: Served, authorization: str
) -> None:
    worker = served.worker()
    before = _io(worker)
    head = (
        "POST /api/v1/proposals/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{authorization}Content-Length: 300000000\r\n\r\n"
    ).encode()

    # A slow body: 64 KiB every 20 ms, up to 5 s (Django spools past 2.5 MB).
    answer, answered_at, _ = _send_slowly_and_listen(served.port, head, b"x" * 65536, seconds=5)

    status, headers, problem = _problem(answer)
    assert status == 413
    assert answered_at < 1.0  # at once, not after the body
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert problem["code"] == "too_large"
    assert problem["errors"] == {"body": [f"At most {LIMIT} bytes."]}
    read = _io(worker)["rchar"] - before["rchar"]
    assert read < 1_000_000, f"the worker read {read} bytes"
    assert served.spooled(worker) == []


def test_a_chunked_body_is_read_no_further_than_the_limit(served: Served) -> None:
    worker = served.worker()
    before = _io(worker)
    head = (
        b"POST /api/v1/proposals/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"  # 16 KiB a chunk, never a last one

    answer, answered_at, sent = _send_slowly_and_listen(served.port, head, chunk, seconds=5)

    status, _, problem = _problem(answer)
    assert status == 413
    assert problem["code"] == "too_large"
    assert answered_at < 2.0
    assert sent < 4 * 65536  # answered once past the limit, not at the end of the body
    assert _io(worker)["rchar"] - before["rchar"] < 1_000_000
    assert served.spooled(worker) == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_within_the_limit_is_a_proposal(served: Served) -> None:
    owner = factories.agent("chunky", grants={"block_ip": 2})
    body = json.dumps(
        {
            "action": "block_ip",
            "target": "203.0.113.77",
            "confidence": 0.7,
            "rationale": "Sent in pieces by a streaming client.",
        }
    ).encode()

    def pieces() -> Iterator[bytes]:
        yield body[:20]
        yield body[20:]

    response = httpx.post(
        f"{served.url}/api/v1/proposals/",
        content=pieces(),  # no length: sent chunked
        headers={"Authorization": f"Bearer {owner.raw_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert Proposal.objects.get().target == "203.0.113.77"


SEGMENTS = st.one_of(
    st.text(max_size=6).map(lambda text: quote(text, safe="")),
    st.sampled_from(
        [
            "%0A",
            "%0D%0A",
            "%00",
            "%FF",
            "%C3%28",
            "%ED%A0%80",  # a surrogate, in UTF-8 that is not UTF-8
            "%2F",
            "%25",
            "..",
            ".",
            "",
            "%20",
            ";x=1",
            "proposals",
            str(uuid.UUID(int=0)),
            "withdraw",
            "decisions",
        ]
    ),
)
PATHS = st.builds(
    lambda parts, query: "/api/v1/" + "/".join(parts) + query,
    st.lists(SEGMENTS, max_size=5),
    st.sampled_from(["", "?status=%0A", "?x=%FF", "?page=-1"]),
)
METHODS = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"]
)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=METHODS, path=PATHS)
def test_any_path_and_method_under_the_api_answers_in_problem_json(
    served: Served, method: str, path: str
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        body = b"" if method in ("POST", "PUT", "PATCH") else None
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        content = response.read()
    finally:
        conn.close()

    assert response.status < 500, (response.status, content[:300])
    if response.status >= 400:
        assert response.getheader("Content-Type") == "application/problem+json", content[:300]
        if method != "HEAD":
            assert json.loads(content)["status"] == response.status
