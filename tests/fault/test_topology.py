"""The README's topology on one host: two web nodes, two Celery worker nodes with their own
node names and one beat, sharing PostgreSQL, the channel layer's Redis and a broker, which is
Redis in one run and RabbitMQ (quorum queues) in the other.

- A console on node A shows a proposal posted to node B, and the decision made on node B,
  within a second.
- kill -9 of node B's web server and worker while its worker is inside connector calls: every
  approved action still takes effect exactly once, and node B's consoles reconnect to node A.
- Two beats at once escalate each proposal once and send one digest.

One topology per broker serves every test of this module (starting one takes seconds); a test
that needs node B starts it again if an earlier test killed it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from approvals import services
from approvals.models import Execution, ExecutionStatus, Proposal
from audit.models import AuditEvent
from tests import factories, processes
from tests.fault.conftest import FAST_RECOVERY
from tests.fault.test_worker_and_broker_faults import assert_each_took_effect_once

pytestmark = [pytest.mark.fault, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RABBITMQ = ("127.0.0.1", 5672)
NODE_ENV = {
    **FAST_RECOVERY,
    # The lease outlasts the longest connector call below with room to spare.
    "EXECUTION_LEASE_SECONDS": "4",
    # An approval's task is sent with a countdown, as in production (there 5 s): with RabbitMQ
    # it waits in the broker's delay queues, not in a worker.
    "APPROVAL_UNDO_SECONDS": "1",
    "API_RATE_LIMIT_PER_MINUTE": "100000",
    "LOG_LEVEL": "INFO",
}
# Each connector call of a slow-… target takes this long, per node: node B's calls are long
# enough that a kill lands inside one, node A's short enough for the run to stay quick.
CALL_MS = {"A": 1000, "B": 2500}


# --- RabbitMQ -------------------------------------------------------------------------------


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(RABBITMQ, timeout=1):
            return True
    except OSError:
        return False


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode == 0


@contextlib.contextmanager
def rabbitmq_vhost(queue: str) -> Iterator[str]:
    """A virtual host of this run's own, so that parallel runs never share a queue or an
    exchange, and deleting it removes everything the run declared. Where rabbitmqctl is not
    allowed, the default vhost with this run's own queue names, deleted afterwards."""
    vhost = f"soc-topology-{uuid.uuid4().hex[:8]}"
    own = _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
    )
    try:
        yield f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/{vhost if own else ''}"
    finally:
        if own:
            _rabbitmqctl("delete_vhost", vhost)
        else:
            _delete_queues(f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}//", queue)


def _queue_types(broker_url: str) -> dict[str, str] | None:
    """Each queue of the broker URL's vhost and its type, from rabbitmqctl (None without it)."""
    if shutil.which("rabbitmqctl") is None:
        return None
    vhost = broker_url.rsplit("/", 1)[1] or "/"
    done = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None
    return dict(line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)


def _delete_queues(url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=2) as connection, connection.channel() as channel:
        for name in (queue, f"{queue}-callbacks", f"{queue}-reports"):
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
            with contextlib.suppress(Exception):
                channel.exchange_delete(name)


# --- the topology ---------------------------------------------------------------------------


@dataclass
class Node:
    """One web server and one worker, as one machine of the topology would run them."""

    name: str
    url: str = ""
    web: processes.ManagedProcess | None = None
    worker: processes.ManagedProcess | None = None

    def alive(self) -> bool:
        return bool(self.web and self.web.alive() and self.worker and self.worker.alive())


@dataclass
class Topology:
    broker: str
    environment: processes.CeleryEnvironment
    log_dir: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    beats: list[processes.ManagedProcess] = field(default_factory=list)

    def start_node(self, name: str) -> Node:
        node = self.nodes.setdefault(name, Node(name))
        with ThreadPoolExecutor(2) as pool:
            web = pool.submit(
                processes.start_web, self.environment, log_dir=self.log_dir, **NODE_ENV
            )
            worker = pool.submit(
                processes.start_worker,
                self.environment,
                log_dir=self.log_dir,
                concurrency=2,
                name=f"node-{name.lower()}-{uuid.uuid4().hex[:4]}",
                ready_timeout=60,
                **NODE_ENV,
                CONNECTOR_SLOW_MS=str(CALL_MS[name]),
            )
            node.web, node.url = web.result()
            node.worker = worker.result()
        return node

    def node(self, name: str) -> Node:
        """The named node, started again if an earlier test killed it."""
        node = self.nodes[name]
        if not node.alive():
            for process in (node.web, node.worker):
                if process is not None:
                    process.stop(timeout=2)
            self.start_node(name)
        return node

    def beat(self) -> processes.ManagedProcess:
        process = processes.start_beat(self.environment, log_dir=self.log_dir, **NODE_ENV)
        self.beats.append(process)
        return process

    def stop(self) -> None:
        every = [p for n in self.nodes.values() for p in (n.web, n.worker) if p] + self.beats
        # Together, and without waiting for a warm shutdown: nothing the tests need is left.
        with ThreadPoolExecutor(len(every) or 1) as pool:
            list(pool.map(lambda process: process.stop(timeout=1), every))

    def logs(self, tail: int = 3000) -> str:
        """The last `tail` characters of each process's log."""
        every = [p for n in self.nodes.values() for p in (n.web, n.worker) if p] + self.beats
        return "\n".join(f"--- {p.name}\n{p.log()[-tail:]}" for p in every)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def topology(
    request: pytest.FixtureRequest,
    private_redis: processes.PrivateRedis,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Topology]:
    if request.param == "amqp" and not _rabbitmq_answers():
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")
    if not private_redis.answers():
        private_redis.start()
    with django_db_blocker.unblock():
        database_url = processes.database_url()
    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-topology-{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as stack:
        broker = (
            stack.enter_context(rabbitmq_vhost(queue))
            if request.param == "amqp"
            else private_redis.url(1)
        )
        environment = processes.CeleryEnvironment(
            database_url=database_url,
            redis_url=private_redis.url(2),
            queue=queue,
            channel_prefix=f"{settings.CHANNEL_PREFIX}-topology",
            extra={"CELERY_BROKER_URL": broker},
        )
        topology = Topology(request.param, environment, tmp_path_factory.mktemp("topology"))
        stack.callback(topology.stop)
        with ThreadPoolExecutor(3) as pool:
            started = [pool.submit(topology.start_node, name) for name in ("A", "B")]
            started.append(pool.submit(topology.beat))
            for future in started:
                future.result()
        yield topology


@pytest.fixture
def topo(topology: Topology, request: pytest.FixtureRequest) -> Iterator[Topology]:
    """The module's topology for one test; its processes' logs are shown if the test fails.

    Whatever the test, no node may have failed to send a task after a commit (the error is
    only logged, and the work is left to the sweeper).
    """
    yield topology
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(topology.logs())
        return
    whole = topology.logs(tail=10**9)
    failed = [line for line in whole.splitlines() if "in on_commit()" in line]
    assert not failed, failed


# --- a console: a signed-in websocket that fails over between nodes -------------------------


def _session_cookie(user: User) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


class Console:
    """What an analyst's page does with its socket: connect to the first node that answers
    (a load balancer's choice), and when the socket drops, connect again to one that does."""

    def __init__(self, cookie: str, nodes: Callable[[], list[Node]]) -> None:
        self.cookie = cookie
        self.nodes = nodes
        self.received: list[tuple[float, str]] = []
        self.landed: list[str] = []  # the node of each connection, in order
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.wait(lambda: self.landed, timeout=15, what="the console's first connection")

    def _connect(self) -> tuple[str, ClientConnection] | None:
        for node in self.nodes():
            ws = node.url.replace("http://", "ws://") + "/ws/queue/"
            try:
                socket_ = connect(
                    ws, origin=node.url, additional_headers={"Cookie": self.cookie}, open_timeout=3
                )
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError, ConnectionClosed):
                # Not answering, or (a node being killed) reset in the middle of the handshake.
                continue
            return node.name, socket_
        return None

    def _run(self) -> None:
        while not self.stopping.is_set():
            connected = self._connect()
            if connected is None:
                time.sleep(0.1)
                continue
            name, socket_ = connected
            with self.changed:
                self.landed.append(name)
                self.changed.notify_all()
            with socket_:
                while not self.stopping.is_set():
                    try:
                        message = socket_.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    except ConnectionClosed:
                        break
                    with self.changed:
                        self.received.append((time.monotonic(), str(message)))
                        self.changed.notify_all()

    def wait(self, condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (found := condition()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what}; connections so far, "
                        f"by node: {self.landed}; messages received: {len(self.received)}"
                    )
                self.changed.wait(left)
        return found

    def arrival(self, marker: str, *, after: float, timeout: float = 5) -> float:
        """When the first message containing `marker` arrived after `after`."""

        def seen() -> float | None:
            return next((at for at, m in self.received if at >= after and marker in m), None)

        return float(self.wait(seen, timeout=timeout, what=repr(marker)))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


@pytest.fixture
def consoles(analyst: User) -> Iterator[Callable[..., Console]]:
    opened: list[Console] = []

    def open_console(nodes: Callable[[], list[Node]]) -> Console:
        console = Console(_session_cookie(analyst), nodes)
        opened.append(console)
        return console

    yield open_console
    for console in opened:
        console.close()


# --- agents and analysts over HTTP, on a chosen node ----------------------------------------


def post_proposal(node: Node, key: str, target: str) -> tuple[str, float]:
    """Post a proposal to the node; its id and when the request was sent."""
    body = {
        "action": "reset_password",
        "target": target,
        "params": {},
        "confidence": 0.8,
        "rationale": "Credentials seen in a phishing kit's log.",
        "evidence": [{"kind": "alert", "ref": "SIEM-77"}],
        "severity": "high",
    }
    sent = time.monotonic()
    answer = httpx.post(
        f"{node.url}/api/v1/proposals/",
        json=body,
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "pending"
    return answer.json()["id"], sent


def decide(node: Node, token: str, proposal_id: str) -> float:
    sent = time.monotonic()
    answer = httpx.post(
        f"{node.url}/api/v1/proposals/{proposal_id}/decisions/",
        json={"verdict": "approve", "reason": "confirmed with the user"},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return sent


def statuses() -> Counter[str]:
    return Counter(Execution.objects.values_list("status", flat=True))


# --- the tests ------------------------------------------------------------------------------


def test_a_console_on_node_a_shows_within_a_second_what_happens_on_node_b(
    topo: Topology,
    consoles: Callable[..., Console],
    responder: factories.AgentWithKey,
    analyst: User,
) -> None:
    a, b = topo.node("A"), topo.node("B")
    console = consoles(lambda: [a])
    token = Token.objects.create(user=analyst).key
    shown, decided = [], []
    for n in range(4):
        proposal_id, sent = post_proposal(b, responder.raw_key, f"live-{n}@corp.example")
        shown.append(console.arrival(f'id="card-{proposal_id}"', after=sent) - sent)
        sent = decide(b, token, proposal_id)
        marker = f'id="card-{proposal_id}" hx-swap-oob="delete"'
        decided.append(console.arrival(marker, after=sent) - sent)
    assert console.landed == ["A"]
    if topo.broker == "amqp":
        # Quorum queues, so no global prefetch: each worker process holds one message.
        assert "Global QoS is disabled" in a.worker.log()
        types = _queue_types(topo.environment.extra["CELERY_BROKER_URL"])
        if types is not None:
            assert types[topo.environment.queue] == "quorum", types
            # The approvals' countdowns waited in RabbitMQ's delay queues.
            assert types.get("celery_delayed_0") == "quorum", types
    print(
        f"[{topo.broker}] node B → console on A, from the request's sending: proposals "
        f"{', '.join(f'{t * 1000:.0f}' for t in shown)} ms; decisions "
        f"{', '.join(f'{t * 1000:.0f}' for t in decided)} ms"
    )
    assert max(shown) < 1.0, shown
    assert max(decided) < 1.0, decided


def test_kill_9_of_node_b_mid_execution_runs_every_action_once_and_consoles_move_to_a(
    topo: Topology,
    consoles: Callable[..., Console],
    responder: factories.AgentWithKey,
    analyst: User,
) -> None:
    a, b = topo.node("A"), topo.node("B")
    on_a = consoles(lambda: [a])
    on_b = consoles(lambda: [b, a])  # B while it answers, then whichever does
    assert (on_a.landed, on_b.landed) == (["A"], ["B"])
    token = Token.objects.create(user=analyst).key
    ids = [post_proposal(b, responder.raw_key, f"slow-{n}@corp.example")[0] for n in range(6)]
    for proposal_id in ids:
        decide(b, token, proposal_id)

    # Four worker processes, two per node, each running one execution at a time: with three
    # running, one at least is node B's, inside its connector call (which writes nothing until
    # it ends).
    processes.wait_for(
        lambda: statuses()[ExecutionStatus.RUNNING] >= 3, timeout=30, what="three running"
    )
    killed_at = time.monotonic()
    b.worker.kill()
    b.web.kill()
    assert not b.worker.alive() and not b.web.alive()

    # Node B's console lost its socket and is back, on node A.
    on_b.wait(lambda: on_b.landed == ["B", "A"], timeout=10, what="the console to reconnect")
    reconnected = time.monotonic() - killed_at
    later, sent = post_proposal(a, responder.raw_key, "after-kill@corp.example")
    for console in (on_a, on_b):
        console.arrival(f'id="card-{later}"', after=sent)

    executions = list(Execution.objects.filter(proposal_id__in=ids))
    try:
        processes.wait_for(
            lambda: statuses()[ExecutionStatus.SUCCEEDED] == 6, timeout=45, interval=0.2
        )
    except TimeoutError:
        raise AssertionError(f"not all six ran: {dict(statuses())}") from None
    recovered = time.monotonic() - killed_at
    assert_each_took_effect_once(executions, connector="identity", counter="password_resets")
    # Node B's calls were cut off: their leases ran out, the sweeper put them back, and node A
    # ran them again, as their second attempt (the connector answered once either way).
    requeued = set(
        AuditEvent.objects.filter(event_type="execution.requeued").values_list(
            "data__execution", flat=True
        )
    )
    assert requeued, "node B was inside a call when it was killed"
    assert {str(e.pk) for e in Execution.objects.filter(proposal_id__in=ids, attempts=2)} >= (
        requeued
    )
    print(
        f"[{topo.broker}] kill -9 of node B: 6 approved, 6 succeeded, ledger 6 calls (one per "
        f"key), {len(requeued)} cut off and recovered after the lease; consoles on A "
        f"{reconnected:.1f} s after the kill; all done {recovered:.1f} s after it"
    )


def test_two_beats_at_once_escalate_each_proposal_once_and_send_one_digest(
    topo: Topology, responder: factories.AgentWithKey, analyst: User, senior: User
) -> None:
    if topo.broker != "redis":
        pytest.skip("the sweep's lock is the database's: one broker shows it")
    topo.node("A")
    due = [
        factories.proposal(responder, action="reset_password", target=f"due-{n}@corp.example")
        for n in range(3)
    ]
    Proposal.objects.filter(pk__in=[p.pk for p in due]).update(
        escalate_at=timezone.now() - timedelta(seconds=1)
    )
    # Approved here, so their messages went to this process's broker, which no worker of the
    # topology reads: lost, until a sweep sends them again.
    lost = []
    for n in range(3):
        proposal = factories.proposal(
            responder, action="reset_password", target=f"lost-{n}@corp.example"
        )
        services.proposal_approve(proposal_id=proposal.id, analyst=analyst, reason="go")
        lost.append(Execution.objects.get(proposal=proposal))
    Execution.objects.filter(pk__in=[e.pk for e in lost]).update(
        queued_at=timezone.now() - timedelta(minutes=5)
    )
    workers = [n.worker for n in topo.nodes.values() if n.worker]
    already = [len(w.log()) for w in workers]
    second = topo.beat()
    try:
        processes.wait_for(
            lambda: (
                statuses()[ExecutionStatus.SUCCEEDED] == 3
                and Proposal.objects.filter(
                    pk__in=[p.pk for p in due], escalated_at__isnull=False
                ).count()
                == 3
            ),
            timeout=20,
            interval=0.2,
            what="the sweeps",
        )
        time.sleep(1.5)  # both beats keep ticking: a sweep or two more each
    finally:
        second.stop(timeout=5)
        topo.beats.remove(second)
    events = Counter(
        AuditEvent.objects.filter(
            event_type__in=["proposal.escalated", "escalation.digest_sent"]
        ).values_list("event_type", flat=True)
    )
    assert events == {"proposal.escalated": 3, "escalation.digest_sent": 1}
    assert_each_took_effect_once(lost, connector="identity", counter="password_resets")
    during = [
        line
        for worker, start in zip(workers, already, strict=True)
        for line in worker.log()[start:].splitlines()
        if "approvals.tasks.sweep[" in line and " succeeded " in line
    ]
    skipped = sum("'skipped': True" in line for line in during)
    print(f"two beats: {len(during)} sweeps ran while both ticked, {skipped} skipped their turn")
