"""Invariants of the guardrail routed, checked over every combination hypothesis finds."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from agents.routing import BlockCode, Outcome, QueueCode, RoutingInput, needs_budget, route

TIERS = ["low", "medium", "high", "critical"]


@st.composite
def inputs(draw: st.DrawFn) -> RoutingInput:
    review = draw(st.floats(0, 1))
    auto = draw(st.floats(review, 1))
    return RoutingInput(
        level=draw(st.integers(0, 4)),
        confidence=draw(st.floats(0, 1)),
        auto_threshold=auto,
        review_threshold=review,
        reversible=draw(st.booleans()),
        criticality=draw(st.sampled_from(TIERS)),
        in_scope=draw(st.booleans()),
        connector_allowed=draw(st.booleans()),
        evidence_complete=draw(st.booleans()),
        emergency_stop=draw(st.booleans()),
        suspended=draw(st.booleans()),
        budget_exhausted=draw(st.booleans()),
    )


@given(inputs())
def test_level_zero_never_passes(given_input: RoutingInput) -> None:
    if given_input.level == 0:
        assert route(given_input).outcome == Outcome.BLOCKED


@given(inputs())
def test_critical_asset_never_runs_without_a_human_and_needs_two(given_input: RoutingInput) -> None:
    routed = route(given_input)
    if given_input.criticality == "critical":
        assert routed.outcome != Outcome.AUTO_APPROVED
        if routed.outcome == Outcome.PENDING:
            assert routed.required_approvals == 2


@given(inputs())
def test_emergency_stop_closes_every_automatic_path(given_input: RoutingInput) -> None:
    if given_input.emergency_stop:
        routed = route(given_input)
        assert routed.outcome == Outcome.BLOCKED
        assert routed.code in (BlockCode.EMERGENCY_STOP, BlockCode.AGENT_SUSPENDED)


@given(inputs())
def test_irreversible_action_never_runs_automatically_at_level_three(
    given_input: RoutingInput,
) -> None:
    if given_input.level == 3 and not given_input.reversible:
        assert route(given_input).outcome != Outcome.AUTO_APPROVED


@given(inputs())
def test_below_review_threshold_is_flagged_when_not_blocked_or_advisory(
    given_input: RoutingInput,
) -> None:
    routed = route(given_input)
    if given_input.confidence < given_input.review_threshold and routed.outcome not in (
        Outcome.BLOCKED,
        Outcome.ADVISORY,
    ):
        assert routed.outcome == Outcome.FLAGGED
    if routed.outcome in (Outcome.PENDING, Outcome.AUTO_APPROVED):
        assert given_input.confidence >= given_input.review_threshold


@given(inputs())
def test_suspended_agent_is_always_blocked(given_input: RoutingInput) -> None:
    if given_input.suspended:
        routed = route(given_input)
        assert routed.outcome == Outcome.BLOCKED
        assert routed.code == BlockCode.AGENT_SUSPENDED


@given(inputs())
def test_automatic_execution_needs_confidence_at_or_above_the_auto_threshold(
    given_input: RoutingInput,
) -> None:
    if route(given_input).outcome == Outcome.AUTO_APPROVED:
        assert given_input.level >= 3
        assert given_input.confidence >= given_input.auto_threshold
        assert given_input.in_scope and not given_input.emergency_stop


@given(inputs())
def test_level_one_is_only_ever_advisory_or_blocked(given_input: RoutingInput) -> None:
    if given_input.level == 1:
        assert route(given_input).outcome in (Outcome.ADVISORY, Outcome.BLOCKED)


def test_level_four_runs_an_irreversible_action_when_confident() -> None:
    routed = route(
        RoutingInput(
            level=4,
            confidence=0.95,
            auto_threshold=0.9,
            review_threshold=0.5,
            reversible=False,
            criticality="high",
            in_scope=True,
            connector_allowed=True,
            evidence_complete=True,
            emergency_stop=False,
            suspended=False,
        )
    )
    assert routed.outcome == Outcome.AUTO_APPROVED


@given(inputs())
def test_exhausted_budget_never_auto_approves(given_input: RoutingInput) -> None:
    routed = route(given_input)
    if given_input.budget_exhausted:
        assert routed.outcome != Outcome.AUTO_APPROVED
        if routed.code == QueueCode.BUDGET_EXHAUSTED:
            assert routed.outcome == Outcome.PENDING
            assert routed.required_approvals >= 1


@given(inputs())
def test_budget_changes_only_what_would_have_run_at_once(given_input: RoutingInput) -> None:
    # The submission asks the budget only when the outcome without it is automatic: that is
    # sound only if the budget never changes any other outcome.
    unspent = route(replace(given_input, budget_exhausted=False))
    spent = route(replace(given_input, budget_exhausted=True))
    if needs_budget(unspent):
        assert spent.outcome == Outcome.PENDING
        assert spent.code == QueueCode.BUDGET_EXHAUSTED
    else:
        assert spent == unspent
