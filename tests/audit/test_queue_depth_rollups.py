"""The latency report's peak queue depth from daily rollups is the one a plain walk over the
arrivals and departures gives, and the exact statement's, whatever the timeline and whenever
the days were rebuilt: the depth carried in from before the period, across midnights, and
across the moment today's rollup was built (the rows after it fill the rest of that hour)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals.models import Proposal
from audit import reports
from audit.models import ReportRollupDay
from audit.reports import periods, rollup
from audit.reports.queue import queue_depth
from tests import factories
from tests.audit.history_builder import proposal

START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday; the test settings report in UTC
DAYS = 3
HOUR = 3600
# Proposals live at most this long here: within the longest a policy lets one stay pending
# (240 min, plus the hour `longest_life` adds), as in the console.
LIFE = 4 * HOUR + 50 * 60
SENT = ("pending", "approved", "rejected", "expired", "withdrawn")
NOT_SENT = ("auto_approved", "blocked", "advisory", "flagged")


@dataclass(frozen=True)
class Drawn:
    created: int  # seconds from START
    status: str
    life: int | None  # seconds to its departure; None while pending
    bot: int


# Moments near midnight and on the hour are where the pieces meet.
MOMENTS = st.one_of(
    st.integers(-LIFE, DAYS * 86400 - 1),
    st.sampled_from([k * 86400 + d for k in range(DAYS) for d in (-1, 0, 1, 3599, 3600)]),
)


@st.composite
def timelines(draw: st.DrawFn) -> list[Drawn]:
    out = []
    for _ in range(draw(st.integers(1, 40))):
        status = draw(st.sampled_from(SENT + NOT_SENT[:2]))
        life = None
        if status == "pending":
            # Still pending at the end of the timeline: submitted within a life of it.
            created = draw(st.integers(DAYS * 86400 - LIFE, DAYS * 86400 - 1))
        else:
            created = draw(MOMENTS)
            life = draw(st.one_of(st.integers(0, LIFE), st.sampled_from([0, 1, 3600, LIFE])))
        out.append(Drawn(created, status, life, draw(st.integers(0, 1))))
    return out


# (day index, seconds into that day the rebuild ran; past 86400 it counts the whole day)
REBUILDS = st.lists(
    st.tuples(st.integers(0, DAYS - 1), st.integers(6, 2 * 86400)), min_size=1, max_size=5
)


def _plain_peak(rows: list[Drawn], since: datetime, until: datetime) -> tuple[int, datetime | None]:
    """The most proposals sent to analysts pending at once in [since, until), and when first
    reached: every arrival (at the period's start for one already waiting) and departure,
    a departure first at the same moment."""
    moves = []
    for row in rows:
        if row.status not in SENT:
            continue
        created = START + timedelta(seconds=row.created)
        left = created + timedelta(seconds=row.life) if row.life is not None else None
        if created >= until or (left is not None and left <= since):
            continue
        moves.append((max(created, since), 1))
        if left is not None and left < until:
            moves.append((left, -1))
    depth, peak, at = 0, 0, None
    for when, delta in sorted(moves):
        depth += delta
        if depth > peak:
            peak, at = depth, when
    return peak, at


def _write(rows: list[Drawn], bots: list) -> None:
    for row in rows:
        proposal(
            bots[row.bot],
            created_at=START + timedelta(seconds=row.created),
            status=row.status,
            decided_after=timedelta(seconds=row.life) if row.life is not None else None,
        )


def _rebuild(day: int, seconds: int) -> None:
    """Today's rollup as beat or a decision rebuilds it: counted until a few seconds before
    the clock said."""
    clock = START + timedelta(days=day, seconds=seconds)
    with mock.patch.object(rollup, "timezone", SimpleNamespace(now=lambda: clock)):
        rollup.rollup_day((START + timedelta(days=day)).date())


@pytest.fixture
def bots(db: None) -> list:
    return [
        factories.agent(slug, grants={"isolate_host": 2}).agent for slug in ("edr-bot", "ndr-bot")
    ]


def _peak_row(report: reports.Report) -> list:
    for table in report.tables:
        for row in table.rows:
            if row and row[0] == reports.PEAK:
                return row
    raise AssertionError("no peak queue depth row")


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=timelines(),
    rebuilds=REBUILDS,
    first_hour=st.integers(0, 30),
    by_agent=st.booleans(),
)
# Today's rollup built at 23:36, the queue growing before and after it: the hour the rollup
# and the rows after it share kept only the later part's moves, and the peak lost the rest.
@example(
    rows=[Drawn(2 * 86400 + 23 * HOUR + m * 60, "pending", None, 0) for m in range(0, 60, 2)],
    rebuilds=[(2, 23 * HOUR + 36 * 60 + 8)],
    first_hour=0,
    by_agent=False,
)
def test_the_reports_peak_queue_depth_is_the_plain_walks(
    bots: list, rows: list[Drawn], rebuilds: list, first_hour: int, by_agent: bool
) -> None:
    since = START + timedelta(hours=first_hour)
    until = START + timedelta(days=DAYS)
    f = reports.Filters(since=since, until=until, agent=bots[0].slug if by_agent else None)
    chosen = [row for row in rows if not by_agent or row.bot == 0]
    with transaction.atomic():
        _write(rows, bots)
        for day, seconds in rebuilds:
            _rebuild(day, seconds)
        peak, at = _plain_peak(chosen, since, until)
        whole_day_built = ReportRollupDay.objects.filter(
            day__gte=(since + timedelta(days=1) - timedelta(seconds=1)).date()
        ).exists()
        assert periods.usable(f) == whole_day_built

        report = reports.latency(f)
        label = f"{reports.local(at):%Y-%m-%d %H:%M}" if at else ""
        assert _peak_row(report)[1:] == [peak, label]
        with periods.exact():
            assert _peak_row(reports.latency(f))[1:] == [peak, label]
        # The chart too: interval by interval, the rollups give the exact statement's series.
        if periods.usable(f):
            rolled = queue_depth(f, slots=periods.period(f).queue)
            assert (rolled.series, rolled.peak) == (queue_depth(f).series, peak)
        transaction.set_rollback(True)
    assert not Proposal.objects.exists()


@pytest.mark.django_db
def test_attention_checks_are_left_out_of_the_rollups_as_of_the_exact_figures(
    bots: list, analyst
) -> None:
    """The console's attention checks wait in the queue like proposals, but no report of
    agents counts them: the rollups leave them out too."""
    from tests.audit.history_builder import attention_check

    for minutes in range(5):
        proposal(
            bots[0],
            created_at=START + timedelta(hours=10, minutes=minutes),
            status="approved",
            decided_after=timedelta(hours=1),
        )
        # Each check waits two minutes, beside the proposals.
        attention_check(
            analyst,
            decided_at=START + timedelta(hours=10, minutes=minutes, seconds=90),
            caught=True,
        )
    f = reports.Filters(since=START, until=START + timedelta(days=DAYS))
    with periods.exact():
        exact = reports.latency(f)
    _rebuild(0, 86400 + 60)
    assert periods.usable(f)
    rolled = reports.latency(f)
    assert _peak_row(rolled) == _peak_row(exact)
    assert _peak_row(rolled)[1] == 5
    assert periods.period(f).tallies[("", "", "")].counts["proposals"] == 5
