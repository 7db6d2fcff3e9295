"""A duplicate group's one decision decides the group as the analyst's page showed it: its form
names the group and when the page read it, and the server resolves the proposals. A proposal
that arrived later is never decided by it (nobody saw it); a forged or outdated form is refused
and changes nothing."""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core import signing
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals import selectors, services
from approvals.models import Decision, Proposal, ProposalStatus
from audit.models import AuditEvent
from soc_console.errors import InvalidInput, WrongState
from tests import factories

pytestmark = pytest.mark.django_db

HOSTS = (f"ws-{n:04d}.corp.example" for n in itertools.count(100))


@pytest.fixture
def storm_agent(db: None) -> factories.AgentWithKey:
    # A storm's worth of proposals on one host: the circuit breaker stays out of the way.
    return factories.agent(
        "storm-bot",
        grants={"isolate_host": 2},
        max_pending=10_000,
        max_proposals_per_minute=10_000,
    )


def _submit(owner: factories.AgentWithKey, host: str, n: int) -> list[Proposal]:
    return [factories.proposal(owner, target=host, rationale=f"Beacon {i}") for i in range(n)]


def _token(host: str) -> str:
    return selectors.duplicate_groups([("isolate_host", host)])[f"isolate_host {host}"].token


def _decided_by(user: User, proposals: list[Proposal]) -> set[str]:
    decided = Decision.objects.filter(analyst=user, proposal__in=[p.id for p in proposals])
    return {str(i) for i in decided.values_list("proposal", flat=True)}


def _pending(proposals: list[Proposal]) -> set[str]:
    ids = [p.id for p in proposals]
    return {
        str(i)
        for i in Proposal.objects.filter(pk__in=ids, status=ProposalStatus.PENDING).values_list(
            "id", flat=True
        )
    }


def test_the_group_form_decides_what_the_page_showed_and_leaves_newer_ones_pending(
    signed_in: Callable[[User], Client], analyst: User, storm_agent: factories.AgentWithKey
) -> None:
    host = next(HOSTS)
    shown = _submit(storm_agent, host, 3)
    client = signed_in(analyst)
    page = client.get("/").content.decode()
    assert "Approve all 3" in page
    # One hidden field for the group, whatever its size: no proposal id in the form.
    form = page[page.index('<form class="group-decide"') :]
    form = form[: form.index("</form>")]
    assert not any(str(p.id) in form for p in shown)
    token = html.unescape(re.search(r'name="group" value="([^"]+)"', form).group(1))
    newer = _submit(storm_agent, host, 2)  # arrive while the analyst reads the card

    response = client.post(
        "/proposals/decide/",
        {"group": token, "verdict": "reject", "reason": "one false positive"},
        HTTP_HX_REQUEST="true",
    )

    body = response.content.decode()
    assert 'Rejected <strong data-count="done">3</strong> of 3.' in body
    assert "2 newer proposals of the group arrived after your page showed it" in body
    assert _decided_by(analyst, shown + newer) == {str(p.id) for p in shown}
    assert _pending(newer) == {str(p.id) for p in newer}
    assert AuditEvent.objects.filter(event_type="proposal.rejected").count() == 3


@hypothesis_settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.integers(min_value=2, max_value=5),
    closed=st.sets(st.integers(min_value=0, max_value=4), max_size=3),
    after=st.integers(min_value=0, max_value=3),
    verdict=st.sampled_from(["approve", "reject"]),
)
def test_a_group_decision_never_decides_a_proposal_newer_than_its_stamp(
    analyst: User,
    analyst2: User,
    storm_agent: factories.AgentWithKey,
    before: int,
    closed: set[int],
    after: int,
    verdict: str,
) -> None:
    """Whatever arrives after the page read the group and whatever another analyst decided
    in between: the group's decision decides exactly what was pending then and still is."""
    host = next(HOSTS)
    seen = _submit(storm_agent, host, before)
    token = _token(host)
    late = _submit(storm_agent, host, after)
    gone = [p for i, p in enumerate(seen) if i in closed]
    for p in gone:
        services.proposal_reject(proposal_id=p.id, analyst=analyst2, reason="handled elsewhere")
    still = [p for p in seen if p not in gone]

    if not still:
        with pytest.raises(WrongState) as refused:
            services.proposals_decide_group(
                group=token, analyst=analyst, verdict=verdict, reason="seen"
            )
        assert refused.value.code == "group_gone"
        assert _decided_by(analyst, seen + late) == set()
        return
    summary = services.proposals_decide_group(
        group=token, analyst=analyst, verdict=verdict, reason="seen"
    )

    assert {item.proposal_id for item in summary.done} == {str(p.id) for p in still}
    assert summary.refused == [] and summary.newer == after
    assert _decided_by(analyst, seen + late) == {str(p.id) for p in still}
    assert _pending(late) == {str(p.id) for p in late}


def test_an_approval_undone_after_the_page_read_the_group_is_not_decided_by_it(
    analyst: User, analyst2: User, storm_agent: factories.AgentWithKey, settings
) -> None:
    """Approved when the page read the group, so not counted in it; pending again by an undo
    since: the group's decision leaves it to a decision of its own."""
    settings.APPROVAL_UNDO_SECONDS = 60
    host = next(HOSTS)
    first, *rest = _submit(storm_agent, host, 3)
    services.proposal_approve(proposal_id=first.id, analyst=analyst2)
    token = _token(host)  # the group: the two still pending
    services.approval_undo(proposal_id=first.id, analyst=analyst2)

    summary = services.proposals_decide_group(
        group=token, analyst=analyst, verdict="reject", reason="dup of INC-9"
    )

    assert {item.proposal_id for item in summary.done} == {str(p.id) for p in rest}
    assert summary.newer == 1
    assert _pending([first]) == {str(first.id)}


@pytest.mark.parametrize(
    "forge",
    [
        # A token edited by hand: another target, a later stamp.
        lambda token: token.replace(token.split(":")[0], token.split(":")[0][::-1]),
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        # A list of ids, as a group's form once sent, is not a group.
        lambda token: "not-a-token",
        lambda token: "",
        # Signed with the console's key, but for a stamp the log has not reached: a page from
        # before the database was reset.
        lambda token: signing.dumps(
            [*signing.loads(token, salt="approvals.duplicate-group")[:2], 10**9],
            salt="approvals.duplicate-group",
        ),
    ],
)
def test_a_forged_or_outdated_group_form_is_refused_and_changes_nothing(
    signed_in: Callable[[User], Client],
    analyst: User,
    storm_agent: factories.AgentWithKey,
    forge: Callable[[str], str],
) -> None:
    host = next(HOSTS)
    shown = _submit(storm_agent, host, 3)
    events = AuditEvent.objects.count()

    with pytest.raises(InvalidInput) as refused:
        services.proposals_decide_group(
            group=forge(_token(host)), analyst=analyst, verdict="approve"
        )
    assert "group" in refused.value.extra["errors"]
    response = signed_in(analyst).post(
        "/proposals/decide/",
        {"group": forge(_token(host)), "verdict": "approve"},
        HTTP_HX_REQUEST="true",
    )

    assert "reload the queue" in response.content.decode()
    assert _decided_by(analyst, shown) == set()
    assert _pending(shown) == {str(p.id) for p in shown}
    assert AuditEvent.objects.count() == events


def test_a_group_decided_since_the_page_read_it_is_refused_with_what_is_newer(
    analyst: User, analyst2: User, storm_agent: factories.AgentWithKey
) -> None:
    host = next(HOSTS)
    shown = _submit(storm_agent, host, 2)
    token = _token(host)
    services.proposals_decide_group(
        group=token, analyst=analyst2, verdict="reject", reason="benign scanner"
    )
    newer = _submit(storm_agent, host, 2)
    events = AuditEvent.objects.count()

    with pytest.raises(WrongState) as refused:
        services.proposals_decide_group(group=token, analyst=analyst, verdict="approve")

    assert refused.value.code == "group_gone"
    assert "2 newer proposals of the group arrived after your page showed it" in (
        refused.value.detail
    )
    assert _decided_by(analyst, shown + newer) == set()
    assert _decided_by(analyst2, shown + newer) == {str(p.id) for p in shown}
    assert _pending(newer) == {str(p.id) for p in newer}
    assert AuditEvent.objects.count() == events
