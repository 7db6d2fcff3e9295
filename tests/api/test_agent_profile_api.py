from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agents.callback_address import callback_address_problem
from agents.models import Agent
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_agent_reads_its_own_policy(api) -> None:
    body = api.get("/api/v1/agent/").json()
    assert body["agent"] == "triage-bot"
    assert body["policy"]["version"] == 1
    assert body["policy"]["grants"]["block_ip"] == 3
    assert body["suspended"] is False


def test_agent_registers_a_callback_and_gets_its_secret_once(api) -> None:
    response = api.put(
        "/api/v1/agent/", {"callback_url": "https://agent.example/hook"}, format="json"
    )
    assert response.status_code == 200
    secret = response.json()["callback_secret"]
    assert len(secret) == 64
    agent = Agent.objects.get(slug="triage-bot")
    assert (agent.callback_url, agent.callback_secret) == ("https://agent.example/hook", secret)
    assert "callback_secret" not in api.get("/api/v1/agent/").json()
    assert AuditEvent.objects.filter(event_type="agent.callback_set").count() == 1


@pytest.mark.parametrize(
    "body", [{"callback_url": "ftp://x"}, {"callback_url": "not a url"}, {"hook": "https://x"}]
)
def test_a_bad_callback_is_refused_and_nothing_changes(api, body) -> None:
    response = api.put("/api/v1/agent/", body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert Agent.objects.get(slug="triage-bot").callback_url == ""


def test_a_console_user_is_not_an_agent(client, analyst) -> None:
    client.force_login(analyst)
    assert client.get("/api/v1/agent/").status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://localhost:8000/hook",
        "http://[::1]/hook",
        # IPv4 written in IPv6 with its dotted tail: refused as the address, not as no URL.
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::127.0.0.1]/hook",
    ],
)
def test_a_callback_into_the_socs_own_network_is_refused(api, settings, url) -> None:
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    response = api.put("/api/v1/agent/", {"callback_url": url}, format="json")
    assert response.status_code == 400
    assert "Refused" in response.json()["errors"]["callback_url"][0]
    assert Agent.objects.get(slug="triage-bot").callback_url == ""


@pytest.mark.parametrize(
    "url", ["http://[::ffff:93.184.216.34]/hook", "https://[64:ff9b::93.184.216.34]:8443/hook"]
)
def test_a_public_ipv4_written_in_ipv6_with_its_dotted_tail_is_a_callback(
    api, settings, url
) -> None:
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    response = api.put("/api/v1/agent/", {"callback_url": url}, format="json")
    assert response.status_code == 200, response.json()
    assert Agent.objects.get(slug="triage-bot").callback_url == url


def test_delivery_refuses_a_name_that_resolves_inward(agent_with_key, settings) -> None:
    from approvals import callbacks
    from tests import factories

    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    # Registered while allowed (or pointed inward later): delivery checks again and sends nothing.
    Agent.objects.filter(pk=agent_with_key.agent.pk).update(
        callback_url="http://localhost.localdomain:9/hook", callback_secret="s" * 64
    )
    proposal = factories.proposal(agent_with_key, action="block_ip", target="198.18.0.7")
    assert callbacks.deliver(proposal_id=str(proposal.pk), event="decided") is None


INWARD = [
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/8",
        "224.0.0.0/4",  # multicast: every listener on the segment
        # IETF protocol assignments, not globally reachable; Python 3.11 calls these global.
        "192.0.0.8/32",
        "192.0.0.128/25",
    )
]


def _aton(address: ipaddress.IPv4Address, parts: int, bases: list[str]) -> str:
    number = int(address)
    octets = [(number >> (8 * (3 - i))) & 0xFF for i in range(4)]
    values = [*octets[: parts - 1], number & ((1 << (8 * (5 - parts))) - 1)]
    forms = {"d": "{}", "o": "0{:o}", "x": "0x{:x}", "X": "0X{:X}"}
    return ".".join(forms[b].format(v) for v, b in zip(values, bases, strict=False))


@st.composite
def inward_host(draw: st.DrawFn) -> str:
    """The host part of a URL that leads into the SOC's own network, however it is spelled."""
    network = draw(st.sampled_from(INWARD))
    address = network.network_address + draw(st.integers(0, network.num_addresses - 1))
    n = int(address)
    spellings = [
        _aton(
            address,
            draw(st.integers(1, 4)),
            draw(st.lists(st.sampled_from("doxX"), min_size=4, max_size=4)),
        ),
        f"[::ffff:{address}]",
        f"[::ffff:{n >> 16:x}:{n & 0xFFFF:x}]",
        f"[64:ff9b::{address}]",
        f"[::ffff:0:{address}]",  # SIIT's IPv4-translated form
        f"[64:ff9b:1::{n >> 16:x}:{n & 0xFFFF:x}]",  # NAT64's local-use prefix
        f"[2002:{n >> 16:x}:{n & 0xFFFF:x}::1]",
        "[::1]",
        "[fe80::1%25eth0]",
        "[fd00::5]",
        "[ff02::1]",
        "[fec0::1]",  # site-local: Python 3.11 calls it global
        "[3fff::1]",  # documentation (RFC 9637)
        draw(
            st.sampled_from(["localhost.", "LocalHost", "api.localhost", "localhost.localdomain."])
        ),
    ]
    if n > 1:
        spellings.append(f"[::{address}]")
    return draw(st.sampled_from(spellings))


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=inward_host(), port=st.sampled_from(["", ":80", ":6379"]))
def test_a_callback_into_the_socs_network_is_refused_in_every_spelling(
    api, settings, host: str, port: str
) -> None:
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    url = f"http://{host}{port}/hook"
    # Checked when it is set, and again when a callback is sent.
    assert callback_address_problem(url, resolve=True)
    response = api.put("/api/v1/agent/", {"callback_url": url}, format="json")
    assert response.status_code == 400, url
    # Refused as an address inward, or (a zone, a root dot) as no URL the pattern admits.
    assert response.json()["errors"]["callback_url"]
    assert Agent.objects.get(slug="triage-bot").callback_url == ""


@pytest.mark.parametrize(
    ("host", "readings"),
    [("0177.0.0.1", ("127.0.0.1", "177.0.0.1")), ("010.8.8.8", ("8.8.8.8", "10.8.8.8"))],
)
def test_a_callback_host_with_a_leading_zero_is_refused_with_both_readings(
    api, settings, host: str, readings: tuple[str, str]
) -> None:
    """The sending client cannot parse it at all: the agent author is told why, in the words
    a target with a leading zero gets, not only that the URL "cannot be parsed"."""
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    response = api.put("/api/v1/agent/", {"callback_url": f"http://{host}:9/cb"}, format="json")
    assert response.status_code == 400
    [message] = response.json()["errors"]["callback_url"]
    assert "leading zero" in message and all(r in message for r in readings), message
    assert Agent.objects.get(slug="triage-bot").callback_url == ""


@pytest.mark.parametrize(
    "host",
    ["134744072", "0x08080808", "8.8.8.8", "[2001:4860:4860::8888]", "192.0.0.9", "192.0.0.10"],
)
def test_a_public_address_is_accepted_in_any_spelling(api, settings, host: str) -> None:
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    response = api.put("/api/v1/agent/", {"callback_url": f"https://{host}/hook"}, format="json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "http://[zz]/hook",  # urlparse raises on these: they were a 500
        "http://[::1/hook",
        "https://user:pass@agent.example/hook",
        "https://agent.example/hook\n",
        " https://agent.example/hook",
        "https://agent.example:99999/hook",
    ],
)
def test_a_malformed_callback_url_is_a_400(api, url) -> None:
    response = api.put("/api/v1/agent/", {"callback_url": url}, format="json")
    assert response.status_code == 400
    assert "callback_url" in response.json()["errors"]
    assert Agent.objects.get(slug="triage-bot").callback_url == ""
