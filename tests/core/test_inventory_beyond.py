"""A target that is more than an inventoried asset is rated as what the inventory does not
hold, not as the asset it touches.

A network around one low-rated workstation holds addresses nobody inventoried, and
`ws-0142.corp.example.attacker.net` is another host than `ws-0142.corp.example`: both may be
anything, so both are rated at least UNKNOWN_ASSET_CRITICALITY and stay outside a policy
scoped to the low tier or to a group. A network inside an inventoried one, and a name that is
the asset or a shorter spelling of it, are that asset. Hypothesis writes the targets; each goes
through the agent API as an agent would send it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from approvals.models import Proposal
from tests import factories

pytestmark = pytest.mark.django_db

LOW_HOST = "ws-0142.corp.example"
LOW_ADDRESS = ipaddress.IPv4Address("192.168.50.23")
LOW_NETWORK = ipaddress.IPv4Network("10.20.0.0/16")
GRANTS = {"block_ip": 3, "isolate_host": 3}


@dataclass
class Agents:
    tiers: APIClient  # scoped to the low tier
    groups: APIClient  # scoped to the workstations group
    anywhere: APIClient  # no scope


@pytest.fixture
def agents(db: None, settings: Any) -> Agents:
    settings.API_RATE_LIMIT_PER_MINUTE = 10**6
    settings.UNKNOWN_ASSET_CRITICALITY = "high"
    factories.asset(LOW_HOST, criticality="low", group="workstations")
    factories.asset(str(LOW_ADDRESS), kind="ip", criticality="low", group="workstations")
    factories.asset(str(LOW_NETWORK), kind="ip", criticality="low", group="workstations")
    policy = {"auto_threshold": 0.5, "max_pending": 10**6}
    return Agents(
        tiers=factories.agent_client(
            factories.agent("tiers", grants=GRANTS, scope_tiers=["low"], **policy).raw_key
        ),
        groups=factories.agent_client(
            factories.agent(
                "groups", grants=GRANTS, scope_groups=["workstations"], **policy
            ).raw_key
        ),
        anywhere=factories.agent_client(
            factories.agent("anywhere", grants=GRANTS, **policy).raw_key
        ),
    )


LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)


@st.composite
def wider_target(draw: st.DrawFn) -> tuple[str, str]:
    """(action, target): more than an inventoried low asset."""
    family = draw(
        st.sampled_from(
            ["longer name", "partly qualified", "around the address", "around the network"]
        )
    )
    if family == "longer name":
        extra = draw(st.lists(LABEL, min_size=1, max_size=3))
        return "isolate_host", ".".join([LOW_HOST, *extra])
    if family == "partly qualified":
        # `ws-0142.corp` may be `ws-0142.corp.example`, or `ws-0142.corp` of another domain.
        return "isolate_host", ".".join(LOW_HOST.split(".")[:2])
    if family == "around the address":
        prefix = draw(st.integers(0, 31))
        network = ipaddress.IPv4Network((LOW_ADDRESS, prefix), strict=False)
    else:
        prefix = draw(st.integers(0, LOW_NETWORK.prefixlen - 1))
        network = ipaddress.IPv4Network((LOW_NETWORK.network_address, prefix), strict=False)
    spelled = draw(
        st.sampled_from([str(network), f"::ffff:{network.network_address}/{96 + prefix}"])
    )
    return "block_ip", spelled


@st.composite
def same_target(draw: st.DrawFn) -> tuple[str, str]:
    """(action, target): an inventoried low asset, or part of one."""
    family = draw(st.sampled_from(["name", "address", "inside the network"]))
    if family == "name":
        # The name, or its first label as the search domain completes it.
        return "isolate_host", draw(st.sampled_from([LOW_HOST, LOW_HOST.split(".")[0]]))
    if family == "address":
        return "block_ip", draw(st.sampled_from([str(LOW_ADDRESS), f"{LOW_ADDRESS}/32"]))
    prefix = draw(st.integers(LOW_NETWORK.prefixlen, 32))
    offset = draw(st.integers(0, LOW_NETWORK.num_addresses - 1))
    network = ipaddress.IPv4Network((LOW_NETWORK.network_address + offset, prefix), strict=False)
    return "block_ip", str(network)


PROPERTY = hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(pick=wider_target())
def test_more_than_a_low_asset_is_rated_as_unknown_and_stays_out_of_a_low_scope(
    agents: Agents, pick: tuple[str, str]
) -> None:
    action, target = pick
    event(action)
    with transaction.atomic():
        for scoped in (agents.tiers, agents.groups):
            refused = factories.post_proposal(scoped, action, target)
            assert refused.status_code == 403, (target, refused.json())
            assert refused.json()["code"] == "target_out_of_scope"
        response = factories.post_proposal(agents.anywhere, action, target)
        assert response.status_code == 201, (target, response.json())
        assert response.json()["criticality"] == "high", (target, response.json())
        assert not Proposal.objects.filter(status="auto_approved", criticality="low").exists()
        transaction.set_rollback(True)


@PROPERTY
@given(pick=same_target())
def test_a_low_asset_or_a_part_of_it_is_that_asset(agents: Agents, pick: tuple[str, str]) -> None:
    action, target = pick
    event(action)
    with transaction.atomic():
        for scoped in (agents.tiers, agents.groups):
            response = factories.post_proposal(scoped, action, target)
            assert response.status_code == 201, (target, response.json())
            body = response.json()
            assert body["criticality"] == "low", (target, body)
            assert body["status"] == "auto_approved", (target, body)
        transaction.set_rollback(True)


def test_an_unknown_rating_of_critical_makes_a_wider_target_wait_for_two_humans(
    agents: Agents, settings: Any
) -> None:
    settings.UNKNOWN_ASSET_CRITICALITY = "critical"
    for action, target in [
        ("block_ip", "128.0.0.0/1"),
        ("isolate_host", f"{LOW_HOST}.evil.example"),
    ]:
        body = factories.post_proposal(agents.anywhere, action, target).json()
        assert body["criticality"] == "critical", body
        assert body["status"] == "pending", body
        assert body["required_approvals"] == 2, body
        # The card still names the inventoried asset the target touches.
        assert body["asset"]["identifier"] in (LOW_HOST, str(LOW_ADDRESS)), body


@pytest.mark.parametrize("sign", ["％", "＿"])
def test_a_sign_folded_into_a_name_matches_nothing_as_a_wildcard(agents: Agents, sign: str) -> None:
    # A fullwidth percent or low line folds to `%` or `_`, which a LIKE pattern would read as
    # "anything": `ws-0142.xn--wg7c` must not be taken for ws-0142.corp.example.
    target = f"ws-0142.xn--{sign.encode('punycode').decode('ascii')}"
    body = factories.post_proposal(agents.anywhere, "isolate_host", target).json()
    # `%` is in no name: unreadable, so critical; `_` is in principals: another, unknown host.
    assert body["criticality"] == ("critical" if sign == "％" else "high"), body
    refused = factories.post_proposal(agents.tiers, "isolate_host", target)
    assert refused.status_code == 403
