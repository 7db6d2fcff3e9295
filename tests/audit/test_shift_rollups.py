"""Approval fatigue from rollups: a stretch of decisions cut anywhere into pieces, each
summarised apart and merged, gives what the whole gives, and both give what a plain walk over
the decisions counts (the exact statement's rules); over the database, the report from daily
rollups has the exact report's counts and medians within 2 %, whatever the filters."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals.models import Decision
from audit import reports
from audit.models import ShiftRollup
from audit.reports import periods, rollup
from audit.reports.base import OFFICE_HOURS
from audit.reports.histogram import put
from audit.reports.shifts import EVERY, GAP, HOUR, Agg, Row, merge_all, summarize
from tests import factories
from tests.audit.history_builder import BASE, proposal

FILTERS = [EVERY, ("bot", ""), ("", "block_ip"), ("bot", "block_ip")]
MINUTE = 60 * 10**6


GAPS = st.one_of(
    st.integers(0, 20 * MINUTE),
    st.integers(20 * MINUTE, 3 * HOUR),
    st.sampled_from([GAP, GAP + 1, HOUR, 2 * HOUR, 2 * HOUR - 1]),
    st.integers(GAP, 30 * HOUR),
)
CARDS = st.one_of(st.none(), st.floats(0.5, 300))


@st.composite
def decisions(draw: st.DrawFn) -> list[Row]:
    """One analyst's decisions: gaps from seconds to hours (some just at the shift gap),
    verdicts, the filters that count each, cards."""
    t = draw(st.integers(0, 10**12))
    drawn = draw(
        st.lists(
            st.tuples(GAPS, st.booleans(), st.integers(0, 7), st.booleans(), CARDS),
            min_size=1,
            max_size=40,
        )
    )
    rows = []
    for gap, approve, mask, undone, card in drawn:
        t += gap
        counted = tuple(f for bit, f in enumerate(FILTERS[1:]) if mask >> bit & 1)
        rows.append(
            Row(
                t,
                approve,
                (EVERY, *counted),
                undone,
                card,
                (t // HOUR) % 24,
                1 + (t // (24 * HOUR)) % 7,
                t // HOUR,
            )
        )
    return rows


def _walk(rows: list[Row], wanted: tuple[str, str]) -> tuple[dict[int, Agg], int]:
    """The exact statement's rules, decision by decision: shifts numbered over every
    decision, figures over the counted ones, by the hour each shift started in."""
    shifts: list[list[Row]] = []
    for row in rows:
        if shifts and row.t - shifts[-1][-1].t <= GAP:
            shifts[-1].append(row)
        else:
            shifts.append([row])
    by_hour: dict[int, Agg] = defaultdict(Agg)
    rubber = float(settings.RUBBER_STAMP_SECONDS)
    for shift in shifts:
        started, ended = shift[0].t, shift[-1].t
        counted = [row for row in shift if wanted in row.filters]
        agg = by_hour[shift[0].hour]
        agg.shifts += 1 if counted else 0
        agg.hours += len({row.key for row in counted})
        for row in counted:
            agg.n += 1
            agg.approvals += row.approve
            agg.undone += row.approve and row.undone
            agg.after += row.dow >= 6 or not OFFICE_HOURS[0] <= row.hour < OFFICE_HOURS[1]
            if row.card is None:
                continue
            put(agg.card, row.card)
            agg.rubber += row.card < rubber
            if ended - started >= 2 * HOUR and row.t < started + HOUR:
                put(agg.first, row.card)
            if ended - started >= 2 * HOUR and row.t > ended - HOUR:
                put(agg.last, row.card)
    runs, run = [], 0
    for row in rows:
        if not row.approve:
            runs.append(run)
            run = 0
        elif wanted in row.filters:
            run += 1
    runs.append(run)
    return {hour: agg for hour, agg in by_hour.items()}, max(runs)


@hypothesis_settings(max_examples=200, deadline=None)
@given(rows=decisions(), data=st.data())
def test_pieces_merged_give_the_whole_and_the_walk(rows: list[Row], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(rows)), max_size=6)))
    pieces = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True) if a < b]
    whole = summarize(rows, FILTERS)
    parts = [summarize(piece, FILTERS) for piece in pieces]
    for wanted in FILTERS:
        merged = merge_all(part[wanted] for part in parts)
        walked, longest = _walk(rows, wanted)
        expected = {hour: agg for hour, agg in walked.items() if agg != Agg()}
        for summary in (whole[wanted], merged):
            totals = {hour: agg for hour, agg in summary.totals().items() if agg != Agg()}
            assert totals == expected
            assert summary.longest == longest


@hypothesis_settings(max_examples=100, deadline=None)
@given(rows=decisions(), data=st.data())
def test_a_filter_with_nothing_counted_reads_the_skeleton(
    rows: list[Row], data: st.DataObject
) -> None:
    """A stretch where a filter counts nothing merges like the analyst's own shifts with
    nothing counted: the shifts around it still join across it."""
    cut = data.draw(st.integers(0, len(rows)))
    quiet = [Row(r.t, r.approve, (EVERY,), r.undone, r.card, r.hour, r.dow, r.key) for r in rows]
    mixed = quiet[:cut] + rows[cut:]
    wanted = ("bot", "")
    direct = summarize(mixed, FILTERS)[wanted]
    first = summarize(mixed[:cut], FILTERS)
    pieces = [first.get(wanted) or first[EVERY].skeleton()] if cut else []
    pieces += [summarize(mixed[cut:], FILTERS)[wanted]] if cut < len(mixed) else []
    assert merge_all(pieces).totals() == direct.totals()
    assert merge_all(pieces).longest == direct.longest


# --- over the database: the report from rollups against the exact statement --------------------

START = BASE.replace(hour=0) - timedelta(days=3)
DAYS = 6


def _shifted_history() -> tuple[list, list]:
    """Analysts on shifts: runs of decisions minutes apart, some crossing midnight, some
    long, some short, with rejections among the approvals."""
    grants = {"block_ip": 3, "isolate_host": 2}
    agents = [factories.agent(slug, grants=grants).agent for slug in ("triage-bot", "edr-bot")]
    people = [factories.user(name, factories.ANALYST) for name in ("alice", "bob")]
    rng = random.Random(7)
    for person in people:
        at = START + timedelta(hours=rng.uniform(0, 6))
        while at < START + timedelta(days=DAYS):
            end = at + timedelta(hours=rng.choice([0.5, 1.5, 3, 6, 9]))
            while at < end:
                item = proposal(
                    rng.choice(agents),
                    created_at=at - timedelta(minutes=rng.uniform(1, 30)),
                    status=rng.choice(["approved", "approved", "approved", "rejected"]),
                    action=rng.choice(list(grants)),
                    decided_after=None,
                    analyst=person,
                    execution=None,
                )
                Decision.objects.create(
                    proposal=item,
                    analyst=person,
                    verdict="approve" if item.status == "approved" else "reject",
                    seconds_on_card=rng.choice([None, rng.uniform(1, 90)]),
                    created_at=at,
                )
                at += timedelta(minutes=rng.expovariate(1 / 12))
            at += timedelta(hours=rng.uniform(2.5, 14))
    return agents, people


@pytest.mark.django_db
def test_fatigue_from_rollups_matches_the_exact_statement() -> None:
    agents, people = _shifted_history()
    whole = reports.Filters(since=START, until=START + timedelta(days=DAYS))
    spans = [
        whole,
        reports.Filters(
            since=START + timedelta(hours=13), until=START + timedelta(days=DAYS - 1, hours=7)
        ),
        reports.Filters(since=whole.since, until=whole.until, agent=agents[1].slug),
        reports.Filters(since=whole.since, until=whole.until, action="block_ip"),
        reports.Filters(since=whole.since, until=whole.until, analyst=people[0].username),
        reports.Filters(
            since=whole.since, until=whole.until, agent=agents[0].slug, action="isolate_host"
        ),
    ]
    exact = [reports.fatigue_rows(f) for f in spans]
    assert all(exact), "every span has decisions"
    assert any(r.shifts > 1 and r.first_n for rows in exact for r in rows if r.shift == "all")

    list(rollup.rollup_all())
    assert ShiftRollup.objects.filter(period="day").exists()
    for f, known in zip(spans, exact, strict=True):
        assert periods.usable(f, threshold=False)
        rolled = reports.fatigue_rows(f)
        assert [(r.analyst, r.shift) for r in rolled] == [(r.analyst, r.shift) for r in known]
        for mine, theirs in zip(rolled, known, strict=True):
            for name in (
                "decisions",
                "approvals",
                "active_hours",
                "shifts",
                "carded",
                "rubber",
                "first_n",
                "last_n",
                "undone",
                "after_hours",
                "longest_streak",
            ):
                assert getattr(mine, name) == getattr(theirs, name), (f, mine, theirs, name)
            for name in ("median_card", "first_median", "last_median"):
                if getattr(theirs, name) is None:
                    assert getattr(mine, name) is None
                else:
                    assert getattr(mine, name) == pytest.approx(getattr(theirs, name), rel=0.02)
    # The page reads the same rows.
    assert reports.fatigue(whole).tables[0].rows
