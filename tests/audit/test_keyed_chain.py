"""The keyed, anchored audit chain: canonical JSON, HMAC, every bad event, checkpoints.

Tampering here is what a database superuser can do (this suite's role is one): switch the
append-only triggers off and edit rows. What the role the app runs as cannot do at all is in
test_database_roles.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit import anchor, log, verify
from audit.canonical import NotCanonical, canonical_json, encode, keyed_hash
from audit.models import AuditEvent, VerificationRun
from audit.tasks import anchor as anchor_task
from tests import factories

DAY = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
DB_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# JSON as agents and services put it in event data: any text jsonb can hold (no NUL, no lone
# surrogate), any finite float, -0.0 and exponents included, integers beyond 64 bits.
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)


def _record(n: int, *, start: int = 0, actor: str = "bot") -> None:
    for i in range(start, start + n):
        with transaction.atomic():
            log.record(event_type="test.event", actor=actor, data={"i": i, "score": i / 7})


def _tamper(*statements: str, params: list | None = None) -> None:
    # What a database superuser can do: switch the append-only triggers off and edit rows.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        for sql in statements:
            cursor.execute(sql, params or [])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def _rehash(digest_of) -> None:  # noqa: ANN001
    """Recompute every hash in order as someone holding `digest_of` (not the key) would."""
    prev = log.GENESIS_HASH
    updates = []
    for event in AuditEvent.objects.order_by("seq"):
        content = log.canonical(
            seq=event.seq,
            at=event.at,
            actor_type=event.actor_type,
            actor=event.actor,
            event_type=event.event_type,
            proposal_id=event.proposal_id,
            data=event.data,
        )
        digest = digest_of(prev.encode() + content)
        updates.append((prev, digest, event.seq))
        prev = digest
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.executemany(
            "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE seq = %s", updates
        )
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


@pytest.fixture
def anchor_file(settings, tmp_path: Path) -> Path:  # noqa: ANN001
    path = tmp_path / "anchor" / "audit-anchor.jsonl"
    settings.AUDIT_ANCHOR_URL = [f"file://{path}"]
    return path


# --- canonical JSON ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
@DB_EXAMPLES
@given(value=json_values)
@example(value=-0.0)
@example(value=1e16)
@example(value=-1.5e300)
@example(value=1e-7)
@example(value=5e-324)
@example(value={"confidence": -0.0, "nested": [1e22, 0.1 + 0.2]})
def test_what_jsonb_returns_encodes_back_to_the_hashed_bytes(value) -> None:  # noqa: ANN001
    text = canonical_json({"v": value})
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb::text", [text])
        (returned,) = cursor.fetchone()
    assert encode(json.loads(returned)) == text


@given(
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    at=texts,
    actor_type=texts,
    actor=texts,
    event_type=texts,
    proposal_id=st.none() | texts,
    data=st.dictionaries(texts, json_values, max_size=5),
)
@example(seq=1, at="", actor_type='"', actor="\\", event_type="\u2028", proposal_id=None, data={})
def test_an_events_content_is_the_encoders_text_of_it_as_a_dict(  # noqa: PLR0913
    seq,
    at,
    actor_type,
    actor,
    event_type,
    proposal_id,
    data,  # noqa: ANN001
) -> None:
    fields = {
        "seq": seq,
        "at": at,
        "actor_type": actor_type,
        "actor": actor,
        "event_type": event_type,
        "proposal_id": proposal_id,
        "data": log.canonical_data(data),
    }
    assert log.event_content(**fields) == encode(fields).encode()


@pytest.mark.django_db
@DB_EXAMPLES
@given(data=st.dictionaries(texts, json_values, max_size=5))
@example(data={"confidence": -0.0})
@example(data={"big": 1e16, "tiny": 1e-7})
def test_any_recorded_data_verifies(data) -> None:  # noqa: ANN001
    with transaction.atomic():
        log.record(event_type="test.data", actor="prop", data=data)
    result = verify.verify_chain()
    assert result.ok, result.findings


@pytest.mark.django_db
def test_a_proposal_with_confidence_negative_zero_keeps_the_chain_verifiable(
    agent_with_key,
) -> None:
    submitted = factories.proposal(agent_with_key, confidence=-0.0)
    event = AuditEvent.objects.get(proposal_id=submitted.id, event_type="proposal.submitted")
    assert event.data["confidence"] == 0.0  # recorded as 0.0: jsonb has no negative zero
    assert math.copysign(1, event.data["confidence"]) == 1
    factories.proposal(agent_with_key, confidence=0.9)
    result = verify.verify_chain()
    assert result.ok, result.findings
    assert result.events == AuditEvent.objects.count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"x": float("nan")}, "not a finite number"),
        ({"x": [1, float("inf")]}, "not a finite number"),
        ({"x": -float("inf")}, "not a finite number"),
        ({"title": "\ud800"}, "lone surrogate"),
        ({"title": "a\x00b"}, "NUL"),
        ({1: "x"}, "not text"),
    ],
)
def test_data_the_log_cannot_store_as_hashed_is_refused_and_nothing_is_written(
    data: dict, words: str
) -> None:
    _record(2)
    with pytest.raises(NotCanonical, match=words), transaction.atomic():
        log.record(event_type="test.bad", actor="bot", data=data)
    assert AuditEvent.objects.count() == 2
    assert verify.verify_chain().ok


@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
def test_the_keyed_hash_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert keyed_hash(key)(message) == hmac.new(key, message, "sha256").hexdigest()


# --- every bad event --------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_verification_counts_every_bad_event_and_names_each_one(client: Client, manager) -> None:
    _record(30)
    _tamper(
        "UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = 3",
        "UPDATE audit_auditevent SET data = '{\"i\": 0}' WHERE seq = 11",
        "DELETE FROM audit_auditevent WHERE seq = 17",
        "UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = 25",
    )
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    message = str(failure.value)
    assert "BROKEN at event #3" in message and "4 bad events" in message
    for seq, words in [(3, "modified"), (11, "modified"), (17, "missing"), (25, "modified")]:
        assert re.search(rf"#{seq}: .*{words}", message), message
    run = VerificationRun.objects.get()
    assert (run.ok, run.bad_events, run.events) == (False, 4, 29)
    assert [p["seq"] for p in run.problems] == [3, 11, 17, 25]
    client.force_login(manager)
    page = client.get("/audit/").content.decode()
    assert "4 bad events in 29 read" in page
    for seq in (3, 11, 17, 25):
        assert f'href="?upto={seq}#event-{seq}">#{seq}</a>' in page
    assert 'id="event-25" class="bad-event"' in page and 'id="event-24">' in page


@pytest.mark.postgres
@pytest.mark.django_db
def test_more_bad_events_than_are_named_are_all_counted() -> None:
    _record(40)
    _tamper("UPDATE audit_auditevent SET actor = 'mallory' WHERE mod(seq, 2) = 0")
    result = verify.verify_chain()
    assert result.bad_events == 20
    assert [f.seq for f in result.findings] == list(range(2, 2 * verify.FIRST_FEW + 1, 2))
    with pytest.raises(CommandError, match="and 10 more"):
        call_command("verify_audit")


@pytest.mark.postgres
@pytest.mark.django_db
def test_rehashing_without_the_key_is_caught_even_without_an_anchor() -> None:
    _record(8)
    _tamper("UPDATE audit_auditevent SET data = '{\"i\": 99}' WHERE seq = 5")
    _rehash(lambda message: hashlib.sha256(message).hexdigest())  # the old, unkeyed chain
    result = verify.verify_chain()
    assert result.bad_events == 8
    assert any("AUDIT_KEY is not the key" in note for note in result.notes)


# --- anchors ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_anchored_chain_that_grew_since_verifies_against_its_checkpoints(anchor_file) -> None:
    _record(3)
    call_command("anchor_audit")
    _record(3, start=3)
    anchor_task.apply()  # as Celery beat runs it
    _record(2, start=6)
    lines = anchor_file.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 6]
    result = verify.verify_chain()
    assert result.ok and result.checkpoints == 2 and result.events == 8


@pytest.mark.postgres
@pytest.mark.django_db
def test_events_removed_from_the_end_are_caught_against_the_anchor(
    anchor_file, client: Client, manager
) -> None:
    _record(6)
    call_command("anchor_audit")
    _tamper("DELETE FROM audit_auditevent WHERE seq >= 5")
    with pytest.raises(CommandError, match="BROKEN at event #5: the chain ends at #4 but the"):
        call_command("verify_audit")
    run = VerificationRun.objects.get()
    assert (run.ok, run.first_bad_seq, run.bad_events) == (False, 5, 2)
    client.force_login(manager)
    assert "events were removed from the end" in client.get("/audit/").content.decode()


def _truncate_chain() -> None:
    # Test databases may truncate (the session is a superuser with soc.allow_audit_truncate).
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditevent")


@pytest.mark.postgres
@pytest.mark.django_db
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(min_value=3, max_value=10),
    how=st.sampled_from(
        [
            "delete the tail",
            "delete the tail and carry on",
            "delete one",
            "modify one",
            "swap two",
            "re-hash with another key",
            "reset the chain",
        ]
    ),
    pick=st.integers(min_value=0, max_value=10**6),
    guess=st.binary(min_size=1, max_size=64),
)
def test_no_tampering_after_a_checkpoint_verifies(
    anchor_file: Path, n: int, how: str, pick: int, guess: bytes
) -> None:
    _truncate_chain()
    anchor_file.unlink(missing_ok=True)
    _record(n)
    call_command("anchor_audit")
    seq = 1 + pick % n
    if how.startswith("delete the tail"):
        _tamper("DELETE FROM audit_auditevent WHERE seq >= %s", params=[seq])
        if how.endswith("carry on"):
            _record(n + 2 - seq, start=100)  # the app appends on, validly keyed
    elif how == "delete one":
        _tamper("DELETE FROM audit_auditevent WHERE seq = %s", params=[seq])
    elif how == "modify one":
        _tamper("UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = %s", params=[seq])
    elif how == "swap two":
        _swap(seq, seq % n + 1)
    elif how == "re-hash with another key":
        _tamper("UPDATE audit_auditevent SET data = '{\"i\": -1}' WHERE seq = %s", params=[seq])
        _rehash(keyed_hash(guess))
    else:  # reset: everything goes, and the app starts a new chain
        _tamper("DELETE FROM audit_auditevent")
        _record(1 + pick % (n + 3), start=200)
    result = verify.verify_chain()
    assert not result.ok, how
    assert result.bad_events >= 1


def _swap(a: int, b: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE audit_auditevent SET seq = -1 WHERE seq = %s", [a])
        cursor.execute("UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [a, b])
        cursor.execute("UPDATE audit_auditevent SET seq = %s WHERE seq = -1", [b])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


@pytest.mark.django_db
def test_a_checkpoint_line_not_signed_with_the_key_fails_verification(anchor_file) -> None:
    _record(4)
    call_command("anchor_audit")
    forged = json.loads(anchor_file.read_text())
    forged["seq"] = 2
    with anchor_file.open("a") as out:
        out.write(json.dumps(forged) + "\n")
    result = verify.verify_chain()
    assert not result.ok
    assert result.first_bad_seq is None
    assert "line 2 is not a checkpoint signed with AUDIT_KEY" in result.problem


class SyslogReceiver:
    """A SIEM's syslog listener on TCP: keeps every line it receives; can be shut down."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                received = b""
                while chunk := conn.recv(4096):
                    received += chunk
            with self._lock:
                self.lines.extend(received.splitlines())

    def wait_for(self, count: int) -> list[bytes]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.lines) >= count:
                    return list(self.lines)
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.lines)} lines, expected {count}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()


@pytest.fixture
def syslog_receiver():  # noqa: ANN201
    receiver = SyslogReceiver()
    yield receiver
    receiver.close()


RFC5424 = re.compile(
    rb"^<110>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) soc-console (\d+) "
    rb"audit-checkpoint - (\{.*\})$"
)


@pytest.mark.django_db
def test_checkpoints_go_to_syslog_as_signed_rfc5424_lines(
    settings, anchor_file, syslog_receiver
) -> None:  # noqa: ANN001
    settings.AUDIT_ANCHOR_URL = [
        f"file://{anchor_file}",
        f"syslog+tcp://127.0.0.1:{syslog_receiver.port}",
    ]
    _record(5)
    call_command("anchor_audit")
    (line,) = syslog_receiver.wait_for(1)
    match = RFC5424.match(line)
    assert match, line
    checkpoint = anchor.Checkpoint.from_line(match.group(4).decode())
    assert checkpoint is not None  # signed with AUDIT_KEY
    head = AuditEvent.objects.order_by("-seq").first()
    assert (checkpoint.seq, checkpoint.hash) == (head.seq, head.hash)
    assert match.group(4).decode() == anchor_file.read_text().strip()


@pytest.mark.django_db
def test_an_unreachable_syslog_anchor_is_reported_and_the_file_still_gets_its_checkpoint(
    settings, anchor_file, syslog_receiver
) -> None:  # noqa: ANN001
    port = syslog_receiver.port
    syslog_receiver.close()  # the SIEM is down
    settings.AUDIT_ANCHOR_URL = [f"syslog+tcp://127.0.0.1:{port}", f"file://{anchor_file}"]
    _record(2)
    with pytest.raises(CommandError, match=f"syslog\\+tcp://127.0.0.1:{port}: .*refused"):
        call_command("anchor_audit")
    assert json.loads(anchor_file.read_text())["seq"] == 2


@pytest.mark.django_db
def test_anchor_audit_without_an_anchor_says_what_to_set(settings) -> None:  # noqa: ANN001
    settings.AUDIT_ANCHOR_URL = []
    with pytest.raises(CommandError, match="set AUDIT_ANCHOR_URL"):
        call_command("anchor_audit")


# --- verification runs cannot be forged -------------------------------------------------------


@pytest.fixture
def superuser_client(client: Client) -> Client:
    root = User.objects.create_superuser("root", "root@soc.example", "pass-for-tests")
    client.force_login(root)
    return client


@pytest.mark.django_db
def test_verification_runs_are_read_only_in_the_admin_even_for_a_superuser(
    superuser_client: Client,
) -> None:
    _record(2)
    verify.verify_and_record()
    run = VerificationRun.objects.get()
    base = "/admin/audit/verificationrun/"
    assert superuser_client.get(base).status_code == 200
    assert superuser_client.get(f"{base}{run.pk}/change/").status_code == 200  # to read
    form = {
        "at_0": "2030-01-01",
        "at_1": "00:00:00",
        "ok": "on",
        "events": "999",
        "bad_events": "0",
        "checkpoints": "0",
        "seconds": "0",
        "problems": "[]",
    }
    assert superuser_client.get(f"{base}add/").status_code == 403
    assert superuser_client.post(f"{base}add/", form).status_code == 403
    assert superuser_client.post(f"{base}{run.pk}/change/", form).status_code == 403
    assert superuser_client.post(f"{base}{run.pk}/delete/", {"post": "yes"}).status_code == 403
    assert list(VerificationRun.objects.values_list("pk", "events")) == [(run.pk, 2)]


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_verification_run_written_behind_verify_audits_back_shows_as_not_genuine(
    client: Client, manager
) -> None:
    _record(3)
    _tamper("UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = 2")
    verify.verify_and_record()
    VerificationRun.objects.create(  # an INSERT by whoever can write the table
        at=timezone.now() + timedelta(minutes=1), ok=True, events=3, head_hash="f" * 64
    )
    client.force_login(manager)
    page = client.get("/audit/").content.decode()
    assert "not signed with the audit key" in page
    assert "intact" not in page


# --- settings ---------------------------------------------------------------------------------


def _start_settings(**env: str) -> subprocess.CompletedProcess:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AUDIT_", "MIGRATION_", "DEBUG", "DJANGO_", "PYTEST_"))
    }
    # Production also needs its other secrets; these tests are about the audit settings.
    environment.update(
        SECRET_KEY="s" * 50,
        API_KEY_PEPPER="p" * 50,
        DATABASE_URL="postgres://soc_app@db.example:5432/soc",
        **env,
    )
    code = (
        "from soc_console import settings as s; print(s.CELERY_BEAT_SCHEDULE.get('audit-anchor'))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({}, "AUDIT_KEY must be set to a secret of this deployment when DEBUG is off"),
        (
            {"AUDIT_KEY": "dev-only-audit-key-not-for-production-0123456789"},
            "AUDIT_KEY must be set to a secret of this deployment",
        ),
        ({"AUDIT_KEY": "short"}, "AUDIT_KEY must be at least 32 characters"),
        ({"AUDIT_KEY": "k" * 32, "AUDIT_ANCHOR_URL": "http://x/"}, "AUDIT_ANCHOR_URL: 'http"),
        ({"AUDIT_KEY": "k" * 32, "AUDIT_ANCHOR_URL": "file://relative"}, "neither file:///"),
        (
            {"AUDIT_KEY": "k" * 32, "MIGRATION_DATABASE_URL": "postgres://o@db.example/other"},
            "must name the same database",
        ),
    ],
)
def test_production_start_up_refuses_missing_or_bad_audit_settings(
    env: dict[str, str], refusal: str
) -> None:
    done = _start_settings(**env)
    assert done.returncode != 0
    assert refusal in done.stderr


def test_manage_py_refuses_to_start_without_an_audit_key_in_one_line() -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AUDIT_", "DEBUG", "DJANGO_", "PYTEST_"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="soc_console.settings", SECRET_KEY="s" * 50, API_KEY_PEPPER="p" * 50
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode != 0
    assert len(output) == 1, output
    assert output[0].startswith("AUDIT_KEY must be set to a secret of this deployment")


def test_anchoring_is_scheduled_when_an_anchor_is_set() -> None:
    done = _start_settings(
        AUDIT_KEY="k" * 32,
        AUDIT_ANCHOR_URL="file:///var/lib/soc/anchor.jsonl,syslog+tcp://siem.example:601",
        AUDIT_ANCHOR_SECONDS="30",
        MIGRATION_DATABASE_URL="postgres://soc_owner@db.example:5432/soc",
    )
    assert done.returncode == 0, done.stderr
    assert "'task': 'audit.tasks.anchor', 'schedule': 30.0" in done.stdout
    assert _start_settings(DEBUG="1").returncode == 0  # local development needs no key
