"""Agents hear about decisions and completions through HMAC-signed POSTs, retried on errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache

from agents.models import Agent
from approvals import callbacks, tasks
from tests import factories
from tests.execution.conftest import approved, broker_messages
from tests.processes import wait_for
from tests.receivers import Receiver, TricklingReceiver

pytestmark = pytest.mark.django_db

SECRET = "cb-secret-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as state:
        yield state


def _listen(agent: Agent, url: str) -> None:
    Agent.objects.filter(pk=agent.pk).update(callback_url=url, callback_secret=SECRET)


def _valid_signature(request: dict[str, Any]) -> bool:
    headers = request["headers"]
    message = headers["X-SOC-Timestamp"].encode() + b"." + request["body"]
    expected = "sha256=" + hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-SOC-Signature"])


def test_completion_is_posted_signed_to_the_agents_callback(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver
) -> None:
    _listen(responder.agent, receiver.url)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.60")
    tasks.run_execution(str(execution.id))

    outcome = tasks.deliver_callback.apply(args=[str(execution.proposal_id), "completed"])

    assert outcome.get() == 200
    [request] = receiver.received
    assert _valid_signature(request)
    assert request["headers"]["X-SOC-Event"] == "completed"
    payload = json.loads(request["body"])
    assert payload["event"] == "completed"
    assert payload["proposal"]["id"] == str(execution.proposal_id)
    assert payload["proposal"]["execution"]["status"] == "succeeded"


def test_callback_is_retried_after_a_500_with_a_fresh_valid_signature(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver, settings: Any
) -> None:
    # apply() runs the retries at once, so the receiver's pause after a failure (tested on its
    # own below) is none here, or every retry would find it paused.
    settings.CALLBACK_PAUSE_SECONDS = 0
    _listen(responder.agent, receiver.url)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.61")
    receiver.answers = [500, 503]

    # apply() runs the task here and runs its retries at once instead of after a countdown.
    outcome = tasks.deliver_callback.apply(args=[str(execution.proposal_id), "decided"])

    assert outcome.get() == 200
    assert len(receiver.received) == 3
    assert all(_valid_signature(r) for r in receiver.received)
    bodies = {r["body"] for r in receiver.received}
    assert len(bodies) == 1  # the same event each time, so the agent can de-duplicate
    deliveries = {r["headers"]["X-SOC-Delivery"] for r in receiver.received}
    assert len(deliveries) == 1


def test_callback_gives_up_after_its_retries(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver, settings: Any
) -> None:
    settings.CALLBACK_PAUSE_SECONDS = 0  # as above: apply() does not wait between retries
    _listen(responder.agent, receiver.url)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.62")
    receiver.answers = [500] * 20

    outcome = tasks.deliver_callback.apply(args=[str(execution.proposal_id), "decided"])

    assert outcome.failed()
    assert isinstance(outcome.result, callbacks.DeliveryError)
    assert len(receiver.received) == tasks.deliver_callback.max_retries + 1


def _deliver(execution: Any) -> int | None:
    return callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided")


def test_a_failed_receiver_is_paused_for_its_own_agent_and_tried_again_after_the_pause(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver, settings: Any
) -> None:
    settings.CALLBACK_PAUSE_SECONDS = 0.5
    other = factories.agent("other-listener", grants={"block_ip": 2})
    # Both agents post to the same endpoint: the pause is the agent's receiver, not the host's.
    _listen(responder.agent, receiver.url)
    _listen(other.agent, receiver.url)
    first, second = (
        approved(responder, analyst, action="block_ip", target=f"203.0.113.{n}") for n in (80, 81)
    )
    others = approved(other, analyst, action="block_ip", target="203.0.113.82")
    receiver.answers = [503]

    with pytest.raises(callbacks.DeliveryError, match="503"):
        _deliver(first)
    with pytest.raises(callbacks.Paused) as paused:
        _deliver(second)
    assert 0 < paused.value.seconds <= 0.5
    assert len(receiver.received) == 1  # the paused delivery never reached the receiver
    assert _deliver(others) == 200  # the other agent's receiver is not paused

    time.sleep(paused.value.seconds)
    assert _deliver(second) == 200  # the pause is over: tried, answered, and the pause ends
    assert _deliver(first) == 200
    assert len(receiver.received) == 4


def test_each_failure_doubles_the_pause_up_to_a_minute_and_an_answer_ends_it(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver, settings: Any
) -> None:
    settings.CALLBACK_PAUSE_SECONDS = 0.1
    _listen(responder.agent, receiver.url)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.83")
    gate = callbacks.Gate(responder.agent.pk, receiver.url)
    receiver.answers = [500] * 4
    pauses = []
    for _ in range(4):
        with pytest.raises(callbacks.DeliveryError):
            _deliver(execution)
        pause = cache.get(gate.pause_key)
        pauses.append(pause["seconds"])
        # Still within it, whatever the machine's speed (a slow run outlived a 0.1 s pause
        # between two lines): the recorded end moved on, the pause's length kept.
        cache.set(gate.pause_key, {**pause, "until": time.time() + 5})
        with pytest.raises(callbacks.Paused) as paused:
            _deliver(execution)
        assert 0 < paused.value.seconds <= 5
        cache.set(gate.pause_key, {**pause, "until": time.time() - 0.001})  # it has ended
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert len(receiver.received) == 4

    settings.CALLBACK_PAUSE_SECONDS = 50.0  # only the first pause is the setting's
    receiver.answers = [500, 500]
    with pytest.raises(callbacks.DeliveryError):
        _deliver(execution)
    assert cache.get(gate.pause_key)["seconds"] == pytest.approx(1.6)
    # A longer pause, as a receiver down for minutes gets: doubled no further than a minute.
    cache.set(gate.pause_key, {"until": time.time() - 1, "seconds": 40.0})
    with pytest.raises(callbacks.DeliveryError):
        _deliver(execution)
    assert cache.get(gate.pause_key)["seconds"] == callbacks.LONGEST_WAIT_SECONDS
    with pytest.raises(callbacks.Paused):
        _deliver(execution)

    cache.set(gate.pause_key, {"until": time.time() - 1, "seconds": 60.0})
    assert _deliver(execution) == 200
    assert _deliver(execution) == 200  # no pause after an answer
    assert cache.get(gate.pause_key) is None


def test_while_one_delivery_tries_a_paused_receiver_the_others_wait_for_its_answer(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver, settings: Any
) -> None:
    settings.CALLBACK_PAUSE_SECONDS = 0.1
    _listen(responder.agent, receiver.url)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.84")
    receiver.answers = [500]
    with pytest.raises(callbacks.DeliveryError):
        _deliver(execution)
    time.sleep(0.15)

    probe = callbacks.Gate(responder.agent.pk, receiver.url)
    probe.enter()  # the pause is over: this one tries the receiver
    with pytest.raises(callbacks.Paused) as waiting:
        _deliver(execution)
    assert waiting.value.seconds == settings.CALLBACK_DEADLINE_SECONDS + 1
    assert len(receiver.received) == 1

    probe.answered()
    assert _deliver(execution) == 200


def test_without_the_cache_a_delivery_goes_ahead_unpaused(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver, settings: Any
) -> None:
    with socket.socket() as spare:  # a port that nothing listens on
        spare.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{spare.getsockname()[1]}/0"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}
    }
    _listen(responder.agent, receiver.url)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.85")
    receiver.answers = [500]

    with pytest.raises(callbacks.DeliveryError):
        _deliver(execution)
    assert _deliver(execution) == 200  # nothing recorded the pause, so nothing held it back
    assert len(receiver.received) == 2


def test_a_signature_made_with_another_secret_does_not_verify(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver
) -> None:
    _listen(responder.agent, receiver.url)
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.63")
    callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided")
    [request] = receiver.received
    forged = dict(request, headers={**request["headers"]})
    forged["headers"]["X-SOC-Signature"] = callbacks.sign(
        "another", request["headers"]["X-SOC-Timestamp"], request["body"]
    )
    assert _valid_signature(request)
    assert not _valid_signature(forged)


def test_agent_without_a_callback_url_gets_no_post(
    responder: factories.AgentWithKey, analyst: User, receiver: Receiver
) -> None:
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.64")
    assert callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided") is None
    assert receiver.received == []


def test_decision_and_completion_enqueue_callbacks_after_commit(
    responder: factories.AgentWithKey,
    analyst: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _listen(responder.agent, "http://127.0.0.1:9/unused")
    with django_capture_on_commit_callbacks(execute=True):
        execution = approved(responder, analyst, action="block_ip", target="203.0.113.65")
        tasks.run_execution(str(execution.id))
    # On the callbacks' own queue; the executions' queue holds only the execution.
    sent = [m["args"] for m in broker_messages(settings.CALLBACK_QUEUE)]
    assert sent == [
        [str(execution.proposal_id), "decided"],
        [str(execution.proposal_id), "completed"],
    ]
    assert [m["task"] for m in broker_messages()] == ["approvals.tasks.run_execution"]


def test_no_callback_task_is_queued_for_an_agent_that_does_not_listen(
    responder: factories.AgentWithKey,
    analyst: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        execution = approved(responder, analyst, action="block_ip", target="203.0.113.66")
        tasks.run_execution(str(execution.id))
    assert [m["task"] for m in broker_messages()] == ["approvals.tasks.run_execution"]
    assert broker_messages(settings.CALLBACK_QUEUE) == []


@pytest.mark.parametrize("deadline", [1.0, 2.5])
def test_a_trickling_receiver_holds_a_delivery_no_longer_than_the_deadline(
    responder: factories.AgentWithKey, analyst: User, settings: Any, deadline: float
) -> None:
    settings.CALLBACK_DEADLINE_SECONDS = deadline
    settings.CALLBACK_TIMEOUT_SECONDS = 5.0  # each byte comes well within the per-step timeout
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.68")
    with TricklingReceiver(interval=0.4, hold=30) as trickle:
        _listen(responder.agent, trickle.url)
        began = time.monotonic()
        with pytest.raises(callbacks.DeliveryError, match="deadline"):
            callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided")
        took = time.monotonic() - began
        wait_for(lambda: trickle.finished(), timeout=5, what="the receiver to see the hang-up")

    assert deadline <= took < deadline + 0.5, took
    [hold] = trickle.holds
    assert hold.bytes_sent >= 2  # it was answering, a byte at a time, when the deadline came
    assert hold.seconds < deadline + 0.5


class _Rebinding:
    """A resolver whose name answers a public address first and another address after: the
    DNS rebinding a compromised agent sets up with a zero TTL."""

    def __init__(self, name: str, first: str | tuple[str, ...], then: str) -> None:
        self.name, self.then = name, then
        self.first = first if isinstance(first, tuple) else (first,)
        self.asked = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, *args: Any, **kwargs: Any) -> list[Any]:
        # Asked as text by the check, as IDNA bytes by the HTTP client's own lookup.
        if (host.decode("ascii") if isinstance(host, bytes) else host) != self.name:
            return self.real(host, *args, **kwargs)
        self.asked += 1
        answers = self.first if self.asked == 1 else (self.then,)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 0))
            for address in answers
        ]


@pytest.fixture
def outside_only(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Callbacks checked as in production (no private networks), quick to give up, and sent
    directly (a proxy in the environment would take them by name: see proxy_for)."""
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    settings.CALLBACK_TIMEOUT_SECONDS = 1
    for scheme in ("HTTP", "HTTPS", "ALL"):
        monkeypatch.delenv(f"{scheme}_PROXY", raising=False)
        monkeypatch.delenv(f"{scheme.lower()}_proxy", raising=False)


def _resolving(
    monkeypatch: pytest.MonkeyPatch, agent: Agent, receiver: Receiver, name: str, *answers: str
) -> _Rebinding:
    """The agent's callback URL names `name` on the receiver's port; the resolver answers."""
    port = receiver.url.split(":")[-1].split("/")[0]
    resolver = _Rebinding(name, *answers)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    _listen(agent, f"http://{name}:{port}/hook")
    return resolver


@pytest.mark.usefixtures("outside_only")
def test_a_name_that_answers_inward_after_the_check_reaches_nothing_inside(
    responder: factories.AgentWithKey,
    analyst: User,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = _resolving(
        monkeypatch, responder.agent, receiver, "hooks.rebind.example", "93.184.216.34", "127.0.0.1"
    )
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.61")

    # The check passes (a public address); the POST goes to that address, which answers
    # nothing here, and never to the loopback address the name gives afterwards.
    with pytest.raises(callbacks.DeliveryError):
        callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided")

    assert resolver.asked == 1
    assert receiver.received == []


@pytest.fixture
def loopback_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check takes 127.0.0.1, where the receiver stands, as outside, and every other
    address as inward."""
    from agents import callback_address

    monkeypatch.setattr(
        callback_address,
        "_special",
        lambda host, address: None if str(address) == "127.0.0.1" else f"{host} is inward",
    )


@pytest.mark.usefixtures("outside_only", "loopback_outside")
def test_a_callback_goes_to_the_address_checked_with_its_name_as_the_host(
    responder: factories.AgentWithKey,
    analyst: User,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The receiver stands on loopback, taken as outside; the address the name answers next,
    # which a second lookup would connect to, is refused.
    resolver = _resolving(
        monkeypatch, responder.agent, receiver, "hooks.agent.example", "127.0.0.1", "10.255.255.1"
    )
    port = receiver.url.split(":")[-1].split("/")[0]
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.62")

    status = callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided")

    assert status == 200
    assert resolver.asked == 1
    [request] = receiver.received
    assert request["headers"]["Host"] == f"hooks.agent.example:{port}"
    assert _valid_signature(request)


@pytest.fixture
def both_loopbacks_outside(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """127.0.0.1 (the receiver) and 127.0.0.2 taken as outside, every other address inward."""
    from agents import callback_address

    outside = {"127.0.0.1", "127.0.0.2"}
    monkeypatch.setattr(
        callback_address,
        "_special",
        lambda host, address: None if str(address) in outside else f"{host} is inward",
    )
    return outside


@pytest.mark.usefixtures("outside_only", "both_loopbacks_outside")
def test_a_first_address_that_takes_the_connection_and_fails_is_the_only_one_tried(
    responder: factories.AgentWithKey,
    analyst: User,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first address accepts the connection and drops it unanswered: the event may have
    # reached the agent, so it is retried later as a whole, never sent on to the next address.
    port = int(receiver.url.split(":")[-1].split("/")[0])
    dropping = socket.create_server(("127.0.0.2", port))
    accepted: list[bytes] = []

    def drop() -> None:
        peer, _ = dropping.accept()
        with peer:
            accepted.append(peer.recv(65536))

    thread = threading.Thread(target=drop, daemon=True)
    thread.start()
    _resolving(
        monkeypatch,
        responder.agent,
        receiver,
        "hooks.dual.example",
        ("127.0.0.2", "127.0.0.1"),
        "10.255.255.1",
    )
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.65")
    try:
        with pytest.raises(callbacks.DeliveryError):
            callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided")
        thread.join(5)
    finally:
        dropping.close()
    assert accepted and accepted[0].startswith(b"POST /hook")
    assert receiver.received == []


@pytest.mark.usefixtures("outside_only")
def test_a_name_whose_first_address_takes_no_connection_is_called_at_the_next(
    responder: factories.AgentWithKey,
    analyst: User,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    both_loopbacks_outside: set[str],
) -> None:
    # A dual-stack name on a worker with no route for its first answer, in small: nothing
    # listens on 127.0.0.2, the receiver listens on 127.0.0.1; both are taken as outside.
    from agents import callback_address

    outside = both_loopbacks_outside
    resolver = _resolving(
        monkeypatch,
        responder.agent,
        receiver,
        "hooks.dual.example",
        ("127.0.0.2", "127.0.0.1", "127.0.0.2"),
        "10.255.255.1",
    )
    port = receiver.url.split(":")[-1].split("/")[0]
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.64")

    assert callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided") == 200
    assert resolver.asked == 1  # the check's lookup; the tries reuse its answers
    [request] = receiver.received
    assert request["headers"]["Host"] == f"hooks.dual.example:{port}"
    assert _valid_signature(request)

    # Every answer is judged: one inward address among them refuses the name.
    outside.discard("127.0.0.2")
    both = _Rebinding("hooks.dual.example", ("127.0.0.1", "127.0.0.2"), "127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", both)
    refused = callback_address.callback_destination("http://hooks.dual.example/", resolve=True)
    assert refused.problem == "hooks.dual.example is inward"
    assert refused.addresses == ()


@pytest.mark.usefixtures("outside_only")
@pytest.mark.parametrize(
    ("answer", "connect"),
    [
        # The well-known NAT64 prefix: every bit judged, called as answered (an IPv6-only
        # worker reaches the IPv4 service through its translator).
        ("64:ff9b::5db8:d822", "64:ff9b::5db8:d822"),
        # Bits the check does not read (a local NAT64 prefix, 6to4's site part): the IPv4
        # address judged, never what a translator or relay might make of the rest.
        ("64:ff9b:1::5db8:d822", "93.184.216.34"),
        ("64:ff9b:1:0:a:0:5db8:d822", "93.184.216.34"),
        ("2002:5db8:d822::1", "93.184.216.34"),
        ("2002:5db8:d822:abcd::1", "93.184.216.34"),
        ("::ffff:5db8:d822", "93.184.216.34"),
    ],
)
def test_an_ipv4_address_carried_in_ipv6_is_judged_and_called_as_ipv4_but_for_nat64(
    monkeypatch: pytest.MonkeyPatch, answer: str, connect: str
) -> None:
    import ipaddress

    from agents import callback_address, targets

    assert str(targets.canonical("ip", answer).address) == "93.184.216.34"  # what it stands for
    monkeypatch.setattr(socket, "getaddrinfo", _Rebinding("hooks.v6only.example", answer, answer))
    destination = callback_address.callback_destination(
        "https://hooks.v6only.example/hook", resolve=True
    )
    assert destination.problem is None
    assert destination.address == ipaddress.ip_address(connect)

    # The same carriage of an inward address is refused.
    inward = answer.replace("5db8", "7f00").replace("d822", "0001")
    assert str(targets.canonical("ip", inward).address) == "127.0.0.1"
    monkeypatch.setattr(socket, "getaddrinfo", _Rebinding("hooks.v6only.example", inward, inward))
    refused = callback_address.callback_destination(
        "https://hooks.v6only.example/hook", resolve=True
    )
    assert refused.problem is not None and "127.0.0.1" in refused.problem
    assert refused.address is None


@pytest.mark.usefixtures("outside_only", "loopback_outside")
def test_through_the_environments_proxy_a_callback_goes_by_name_and_only_then(
    responder: factories.AgentWithKey,
    analyst: User,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One local endpoint plays both parts: the agent's receiver, which the name resolves to,
    # and the forward proxy, which a proxied POST names the whole URL to in its request line.
    port = receiver.url.split(":")[-1].split("/")[0]
    resolver = _resolving(
        monkeypatch, responder.agent, receiver, "hooks.agent.example", *["127.0.0.1"] * 2
    )
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    execution = approved(responder, analyst, action="block_ip", target="203.0.113.63")

    def deliver() -> int | None:
        return callbacks.deliver(proposal_id=str(execution.proposal_id), event="decided")

    assert deliver() == 200
    # A host NO_PROXY exempts goes straight to the address checked.
    monkeypatch.setenv("NO_PROXY", ".agent.example")
    assert deliver() == 200
    # An entry the HTTP client would read otherwise than this decision (a host with its port):
    # the client does what was decided, and never resolves the name on its own.
    monkeypatch.setenv("NO_PROXY", f"hooks.agent.example:{port}")
    assert deliver() == 200

    proxied, direct, decided = receiver.received
    assert proxied["path"] == decided["path"] == f"http://hooks.agent.example:{port}/hook"
    assert direct["path"] == "/hook"
    assert {r["headers"]["Host"] for r in receiver.received} == {f"hooks.agent.example:{port}"}
    assert all(_valid_signature(r) for r in receiver.received)
    assert resolver.asked == 3  # the checks' lookups, one per delivery, and no other


def test_which_callbacks_go_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for scheme in ("HTTP", "HTTPS", "ALL", "NO"):
        monkeypatch.delenv(f"{scheme}_PROXY", raising=False)
        monkeypatch.delenv(f"{scheme.lower()}_proxy", raising=False)
    url = "https://hooks.agent.example/hook"
    assert callbacks.proxy_for(url) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    assert callbacks.proxy_for(url) == "http://proxy.corp.example:3128"
    assert callbacks.proxy_for("http://hooks.agent.example/hook") is None  # only HTTPS's
    monkeypatch.setenv("ALL_PROXY", "http://all.corp.example:3128")
    assert callbacks.proxy_for("http://hooks.agent.example/hook") == "http://all.corp.example:3128"
    monkeypatch.setenv("NO_PROXY", "agent.example")
    assert callbacks.proxy_for(url) is None
    assert callbacks.proxy_for("https://hooks.elsewhere.example/") == (
        "http://proxy.corp.example:3128"
    )


def test_a_tls_callback_keeps_its_name_for_the_certificate() -> None:
    import ipaddress

    url, headers, extensions = callbacks.pinned(
        "https://hooks.agent.example:8443/a?b=1",
        ipaddress.ip_address("2001:db8::7"),
        {"X-SOC-Event": "decided"},
    )
    assert str(url) == "https://[2001:db8::7]:8443/a?b=1"
    assert headers == {"X-SOC-Event": "decided", "Host": "hooks.agent.example:8443"}
    assert extensions == {"sni_hostname": "hooks.agent.example"}
    # A URL with an address in it was not resolved: it goes as it is.
    assert callbacks.pinned("http://198.51.100.9/h", None, {}) == ("http://198.51.100.9/h", {}, {})
