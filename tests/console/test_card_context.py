"""A new card's context message is skipped when its proposal has nothing around it: the cheap
look that decides this (selectors.anything_around) must agree with the contexts themselves,
whatever else is open on the target, decided there, or recorded by a connector."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals import connector_state, live, selectors, services
from approvals.models import ConnectorState
from tests import factories

pytestmark = pytest.mark.django_db

HOSTS = (f"ctx-{n:04d}.corp.example" for n in itertools.count(1))
ADDRESSES = (f"10.77.{n // 250}.{n % 250 + 1}" for n in itertools.count())
ACTIONS = ("isolate_host", "kill_process")


@pytest.fixture
def busy_agent(db: None) -> factories.AgentWithKey:
    return factories.agent(
        "context-bot",
        grants={action: 2 for action in (*ACTIONS, "block_ip")},
        max_pending=10_000,
        max_proposals_per_minute=10_000,
    )


# Each example writes its proposals through the services: a few dozen say enough.
EXAMPLES = hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EARLIER = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.sampled_from(["pending", "approved", "rejected"])),
    max_size=4,
)
EDR_STATES = st.sampled_from([None, {}, {"isolated": True}, {"isolated": False}])


def _propose_earlier(
    agent: factories.AgentWithKey, analyst: User, host: str, earlier: list[tuple[str, str]]
) -> None:
    """Proposals already made on the host, each left pending, approved or rejected."""
    for action, fate in earlier:
        proposal = factories.proposal(agent, action=action, target=host)
        if fate == "approved":
            services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
        elif fate == "rejected":
            services.proposal_reject(proposal_id=proposal.id, analyst=analyst, reason="handled")


def _contexts_show_something(action: str, target: str) -> bool:
    """What live.contexts_changed renders for a new card, built in full."""
    found = selectors.open_on_targets([target])
    wanted = found.pairs() | {(action, target)}
    states = connector_state.target_states((a, t, found.params((a, t))) for a, t in wanted)
    return not all(found.context(a, t, states).empty for a, t in sorted(wanted))


@EXAMPLES
@given(
    earlier=EARLIER,
    edr_state=EDR_STATES,
    other_connector=st.booleans(),
    action=st.sampled_from(ACTIONS),
    spelling=st.sampled_from([str, lambda host: f"{host}.", str.upper]),
)
def test_a_new_card_is_alone_exactly_when_its_contexts_would_be_empty(
    analyst: User,
    busy_agent: factories.AgentWithKey,
    earlier: list[tuple[str, str]],
    edr_state: dict | None,
    other_connector: bool,
    action: str,
    spelling: Callable[[str], str],
) -> None:
    host = next(HOSTS)
    _propose_earlier(busy_agent, analyst, host, earlier)
    now = timezone.now()
    if edr_state is not None:
        ConnectorState.objects.update_or_create(
            connector="edr", target=host, defaults={"state": edr_state, "updated_at": now}
        )
    if other_connector:
        # Another connector's row on the same name says nothing about this card.
        ConnectorState.objects.update_or_create(
            connector="firewall",
            target=host,
            defaults={"state": {"blocked": True}, "updated_at": now},
        )
    new = factories.proposal(busy_agent, action=action, target=spelling(host))
    target = new.target_canonical or new.target
    assert target == host

    assert bool(selectors.anything_around([(action, target)])) == _contexts_show_something(
        action, target
    )


@EXAMPLES
@given(
    earlier=EARLIER,
    edr_state=EDR_STATES,
    action=st.sampled_from(ACTIONS),
    verdict=st.sampled_from(["approve", "reject"]),
    spelling=st.sampled_from([str, lambda host: f"{host}.", str.upper]),
)
def test_a_decisions_contexts_match_the_full_computation_on_every_card_left(
    analyst: User,
    busy_agent: factories.AgentWithKey,
    earlier: list[tuple[str, str]],
    edr_state: dict | None,
    action: str,
    verdict: str,
    spelling: Callable[[str], str],
) -> None:
    """After a decision, the contexts sent (live.touched_contexts: a look first for anything
    left open, connector states only for pairs with cards left) are the full computation's for
    every pair that still has pending cards, and end the group of every pair that has none."""
    host = next(HOSTS)
    _propose_earlier(busy_agent, analyst, host, earlier)
    if edr_state is not None:
        ConnectorState.objects.update_or_create(
            connector="edr",
            target=host,
            defaults={"state": edr_state, "updated_at": timezone.now()},
        )
    decided = factories.proposal(busy_agent, action=action, target=spelling(host))
    if verdict == "approve":
        services.proposal_approve(proposal_id=decided.id, analyst=analyst)
    else:
        services.proposal_reject(proposal_id=decided.id, analyst=analyst, reason="handled")

    sent = live.touched_contexts([live.ContextChange((host,), ((action, host),))])

    full = selectors.open_on_targets([host])
    wanted = full.pairs() | {(action, host)}
    states = connector_state.target_states((a, t, full.params((a, t))) for a, t in wanted)
    expected = {
        full.context(a, t, states).key: ((a, t), full.context(a, t, states))
        for a, t in sorted(wanted)
    }
    assert sorted(c.key for c in sent) == sorted(expected)
    for context in sent:
        pair, whole = expected[context.key]
        if pair in full.pairs():  # cards of this pair are still on the pages
            assert context == whole
        else:  # none are left: the context ends the group, and shows what else is open
            assert context.group is None and whole.group is None
            assert context.others == whole.others
            assert context.target_state is None


@EXAMPLES
@given(
    hosts=st.lists(
        st.tuples(
            st.sampled_from(ACTIONS),  # the new proposal's action
            st.lists(st.sampled_from(ACTIONS), max_size=2),  # others already pending there
            st.sampled_from([None, {}, {"isolated": True}]),  # the EDR's state of the host
            st.booleans(),  # a firewall row on the same name
        ),
        max_size=3,
    ),
    addresses=st.lists(
        st.tuples(
            st.sampled_from([None, {}, {"blocked": True}]),  # the firewall's state of it
            st.booleans(),  # an EDR row on the same name
        ),
        max_size=2,
    ),
)
def test_a_batch_of_arrivals_looks_further_exactly_where_a_context_shows_something(
    busy_agent: factories.AgentWithKey, hosts: list[tuple], addresses: list[tuple]
) -> None:
    """A storm's batch of new cards, each on its own target and of several connectors: the
    look names exactly the targets whose contexts the full computation would show."""
    now = timezone.now()
    arrivals = []

    def state(connector: str, target: str, value: dict | None) -> None:
        if value is not None:
            ConnectorState.objects.create(
                connector=connector, target=target, state=value, updated_at=now
            )

    for action, pending, edr_state, firewall in hosts:
        host = next(HOSTS)
        for other in pending:
            factories.proposal(busy_agent, action=other, target=host)
        state("edr", host, edr_state)
        state("firewall", host, {"blocked": True} if firewall else None)
        factories.proposal(busy_agent, action=action, target=host.upper())
        arrivals.append((action, host))
    for firewall_state, edr in addresses:
        address = next(ADDRESSES)
        state("firewall", address, firewall_state)
        state("edr", address, {"isolated": True} if edr else None)
        factories.proposal(busy_agent, action="block_ip", target=address)
        arrivals.append(("block_ip", address))

    looked = selectors.anything_around(arrivals)

    assert looked == sorted(t for a, t in arrivals if _contexts_show_something(a, t))
