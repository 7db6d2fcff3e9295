"""Daily rollups give the reports' figures: the same counts as the exact statements and
percentiles within 2 %, over whole days, partial days and every filter; a decision's commit
rebuilds its day through a real Celery worker."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents.models import Agent
from approvals.models import Decision, Proposal
from approvals.services import proposal_approve
from audit import reports
from audit.models import ReportRollup, ReportRollupDay
from audit.reports import periods, rollup
from audit.reports.histogram import bucket, count_above, percentiles
from audit.reports.readiness import readiness
from tests import factories, processes
from tests.audit.history_builder import BASE, proposal

START = BASE.replace(hour=0) - timedelta(days=3)
DAYS = 6
STATUSES = [
    ("approved", 30),
    ("rejected", 10),
    ("expired", 4),
    ("withdrawn", 4),
    ("auto_approved", 12),
    ("blocked", 4),
    ("advisory", 3),
    ("flagged", 3),
    ("pending", 1),
]
ACTIONS = ["block_ip", "isolate_host", "kill_process"]
CRITICALITY = ["low", "medium", "high", "critical"]
OUTCOMES = ["succeeded", "succeeded", "succeeded", "failed", "rolled_back"]


def _history() -> tuple[list, list]:
    grants = {"block_ip": 3, "isolate_host": 2, "kill_process": 4}
    agents = [factories.agent(slug, grants=grants).agent for slug in ("triage-bot", "edr-bot")]
    people = [
        factories.user("alice", factories.ANALYST),
        factories.user("bob", factories.ANALYST),
        factories.user("sam", factories.SENIOR),
    ]
    rng = random.Random(14)
    names, weights = zip(*STATUSES, strict=True)
    for _ in range(DAYS * 90):
        status = rng.choices(names, weights)[0]
        created = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        decided_after = timedelta(seconds=rng.lognormvariate(5.5, 1.3))
        if status == "expired":
            decided_after = timedelta(hours=4)
        elif status == "auto_approved":
            decided_after = timedelta(seconds=0.05)
        elif status in ("pending", "blocked", "advisory", "flagged"):
            decided_after = None
        two = status == "approved" and rng.random() < 0.15
        final, first = rng.sample(people, 2)
        item = proposal(
            rng.choice(agents),
            created_at=created,
            status=status,
            action=rng.choice(ACTIONS),
            confidence=round(rng.uniform(0.4, 1.0), rng.choice([2, 3])),
            criticality=rng.choice(CRITICALITY),
            decided_after=decided_after,
            analyst=final,
            card=rng.uniform(1, 60),
            execution=rng.choice(OUTCOMES) if status in ("approved", "auto_approved") else None,
            escalated=status in ("approved", "rejected", "expired") and rng.random() < 0.1,
            required_approvals=2 if two else 1,
        )
        if two:
            Decision.objects.create(
                proposal=item,
                analyst=first,
                verdict="approve",
                seconds_on_card=5.0,
                created_at=created + decided_after / 3,
            )
    return agents, people


def _assert_same(exact: reports.Report, rolled: reports.Report) -> None:
    assert [t.title for t in rolled.tables] == [t.title for t in exact.tables]
    for ours, theirs in zip(rolled.tables, exact.tables, strict=True):
        assert len(ours.rows) == len(theirs.rows), ours.title
        for mine, known in zip(ours.rows, theirs.rows, strict=True):
            for a, b in zip(mine, known, strict=True):
                if isinstance(b, reports.Figure) and b.unit == "s" and b.value is not None:
                    assert a.n == b.n, (ours.title, mine, known)
                    assert a.value == pytest.approx(b.value, rel=0.02), (ours.title, mine, known)
                else:
                    assert a == b, (ours.title, mine, known)
    if exact.name != "latency":  # latency's sentences quote percentiles, rounded
        assert rolled.points == exact.points


def _periods(agents: list, people: list) -> list[reports.Filters]:
    whole = reports.Filters(since=START, until=START + timedelta(days=DAYS))
    return [
        whole,
        # Partial first and last days, built from the rows around the rollups.
        reports.Filters(
            since=START + timedelta(hours=13), until=START + timedelta(days=DAYS - 1, hours=7)
        ),
        reports.Filters(since=whole.since, until=whole.until, agent=agents[1].slug, sla_minutes=3),
        reports.Filters(since=whole.since, until=whole.until, action="block_ip", threshold=0.65),
        reports.Filters(since=whole.since, until=whole.until, analyst=people[0].username),
        reports.Filters(
            since=whole.since,
            until=whole.until,
            agent=agents[0].slug,
            action="kill_process",
            analyst=people[2].username,
            scope="reversible",
        ),
    ]


@pytest.mark.django_db
def test_rollups_give_the_exact_counts_and_percentiles_within_two_percent() -> None:
    agents, people = _history()
    spans = _periods(agents, people)
    names = ("latency", "trust", "whatif")
    exact = {(i, name): reports.REPORTS[name](f) for i, f in enumerate(spans) for name in names}
    # An agent's readiness: its record and calibration per action, from the same figures.
    ready = {(i, a.slug): _ready(a, f) for i, f in enumerate(spans) for a in agents}
    assert any(calibration for found in ready.values() for _, calibration, _ in found)
    assert not any(periods.usable(f) for f in spans)

    built = list(rollup.rollup_all())
    assert len(built) >= DAYS
    for i, f in enumerate(spans):
        assert periods.usable(f)
        for name in names:
            _assert_same(exact[(i, name)], reports.REPORTS[name](f))
        for a in agents:
            assert _ready(a, f) == ready[(i, a.slug)], (i, a.slug)


def _ready(agent: Agent, f: reports.Filters) -> list[tuple[object, ...]]:
    return [(x.action, x.calibration, x.record) for x in readiness(agent, f).actions]


@pytest.mark.django_db
def test_histogram_percentiles_stay_within_two_percent_of_percentile_cont() -> None:
    rng = random.Random(7)
    for size in (1, 2, 3, 20, 201, 5000):
        values = [rng.lognormvariate(4, 2) for _ in range(size)]
        histogram: dict[int, int] = {}
        for value in values:
            histogram[bucket(value)] = histogram.get(bucket(value), 0) + 1
        estimated = percentiles(histogram, (0.0, 0.25, 0.5, 0.9, 0.99, 1.0))
        for q, value in zip((0.0, 0.25, 0.5, 0.9, 0.99, 1.0), estimated, strict=True):
            known = reports.percentile(values, q)
            assert abs(value - known) <= 0.02 * known, (size, q, value, known)
        for minutes in (1, 5, 15, 60, 1440):
            assert count_above(histogram, minutes * 60) == sum(
                1 for value in values if value > minutes * 60
            )


@pytest.fixture
def rollup_worker(transactional_db: None, tmp_path: Path) -> Iterator[processes.ManagedProcess]:
    """A real Celery worker on the test database and broker, on the reports' queue."""
    environment = processes.shared_environment()
    process = processes.start_worker(
        environment, log_dir=tmp_path, concurrency=1, queue=settings.REPORTS_QUEUE
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.postgres
def test_a_committed_decision_rebuilds_its_past_days_rollup_through_a_worker(
    rollup_worker: processes.ManagedProcess, settings
) -> None:
    settings.ROLLUP_DELAY_SECONDS = 0.2
    registered = factories.agent("edr-bot", grants={"isolate_host": 2})
    alice = factories.user("alice", factories.ANALYST)
    # Submitted yesterday and still pending: a past day's figures change.
    submitted = proposal(
        registered.agent,
        created_at=timezone.now() - timedelta(days=1),
        status="pending",
        decided_after=None,
    )
    Proposal.objects.filter(pk=submitted.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    day = rollup.local_day(submitted.created_at)
    assert not ReportRollupDay.objects.filter(day=day).exists()

    proposal_approve(proposal_id=submitted.id, analyst=alice, seconds_on_card=12)

    def decided_in_rollup() -> bool:
        row = ReportRollup.objects.filter(
            period="day", day=day, agent="", action="", analyst=""
        ).first()
        return row is not None and row.counts["decided"] == 1

    processes.wait_for(decided_in_rollup, timeout=20, interval=0.1, what="the day's rollup")
    row = ReportRollup.objects.get(
        period="day", day=day, agent="edr-bot", action="isolate_host", analyst="alice"
    )
    assert row.counts["approved"] == 1
    assert sum(row.wait.values()) == 1
    assert ReportRollupDay.objects.get(day=day).proposals == 1


@pytest.mark.django_db
def test_todays_rollup_counts_until_it_was_built_and_the_rows_give_the_rest(analyst) -> None:
    agent = factories.agent("edr-bot", grants={"isolate_host": 2}).agent
    now = timezone.now()
    for minutes in range(1, 40):
        proposal(
            agent,
            created_at=now - timedelta(hours=1, minutes=minutes),
            decided_after=timedelta(seconds=30 * minutes),
            analyst=analyst,
            status="approved" if minutes % 4 else "rejected",
        )
    list(rollup.rollup_all())
    built_at = ReportRollupDay.objects.get(day=rollup.local_day(now)).built_at
    assert built_at <= timezone.now()
    # Submitted after today's rollup was built: only the rows know of these.
    for minutes in range(1, 5):
        proposal(
            agent,
            created_at=timezone.now(),
            decided_after=timedelta(minutes=minutes),
            analyst=analyst,
        )
    f = reports.Filters.default()
    assert periods.usable(f)
    for name in ("latency", "trust", "whatif"):
        with periods.exact():
            exact = reports.REPORTS[name](f)
        _assert_same(exact, reports.REPORTS[name](f))
    assert _row(reports.latency(f), "SLA and queue", reports.DECIDED)[1] == 39 + 4


def _row(report: reports.Report, table: str, first: str) -> list:
    found = next(t for t in report.tables if t.title == table)
    return next(row for row in found.rows if row[0] == first)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Say which days"),
        (("--since", "2026-13-01"), "'2026-13-01' is not a date"),
        (("--since", "yesterday"), "'yesterday' is not a date"),
    ],
)
def test_rollup_reports_refuses_what_it_cannot_read(args: tuple, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("rollup_reports", *args)
    assert not ReportRollupDay.objects.exists()


@pytest.mark.django_db
def test_rollup_reports_rebuilds_the_days_it_is_given(analyst) -> None:
    agent = factories.agent("edr-bot", grants={"isolate_host": 2}).agent
    proposal(agent, created_at=START + timedelta(hours=10), analyst=analyst)
    out = io.StringIO()
    call_command("rollup_reports", "--rebuild", "--until", f"{START:%Y-%m-%d}", stdout=out)
    assert out.getvalue().startswith("rebuilt 1 days (1 proposals)")
    assert list(ReportRollupDay.objects.values_list("day", flat=True)) == [START.date()]


@pytest.mark.django_db
def test_an_executions_change_rebuilds_the_days_its_decisions_were_given(
    analyst, django_capture_on_commit_callbacks
) -> None:
    """Fatigue counts a decision on the day it was given: an execution rolled back today for
    a proposal submitted one day and decided the next rebuilds both days, and today."""
    from django.core.cache import cache

    from approvals.enqueue import rollup_key
    from approvals.models import Execution
    from approvals.services.shared import execution_moved

    agent = factories.agent("edr-bot", grants={"isolate_host": 2}).agent
    submitted = timezone.now().replace(hour=23, minute=0) - timedelta(days=3)
    item = proposal(
        agent,
        created_at=submitted,
        decided_after=timedelta(hours=2),
        analyst=analyst,
        execution="succeeded",
    )
    execution = Execution.objects.select_related("proposal").get(proposal=item)
    execution.status = "rolled_back"
    with django_capture_on_commit_callbacks(execute=True):
        execution_moved(execution, event_type="execution.rolled_back")
    days = {rollup.local_day(moment) for moment in (submitted, item.decided_at, timezone.now())}
    assert len(days) == 3
    assert all(cache.get(rollup_key(day.isoformat())) for day in days)
    # The same when the proposal is not at hand.
    cache.clear()
    execution = Execution.objects.get(pk=execution.pk)
    with django_capture_on_commit_callbacks(execute=True):
        execution_moved(execution, event_type="execution.rolled_back")
    assert all(cache.get(rollup_key(day.isoformat())) for day in days)
