from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from approvals.models import Proposal
from audit import reports
from audit.reports import periods
from audit.reports.readiness import readiness
from audit.verify import verify_chain
from bench.demo_story import story_told
from tests import factories
from tests.audit.history_builder import BASE, proposal

WINDOW = reports.Filters(since=BASE - timedelta(days=1), until=BASE + timedelta(days=1))


def _row(report: reports.Report, table: str, first: str) -> list:
    found = next(t for t in report.tables if t.title == table)
    return next(row for row in found.rows if row[0] == first)


@pytest.fixture
def triage(agent_with_key: factories.AgentWithKey):
    return agent_with_key.agent


@pytest.mark.django_db
def test_latency_percentiles_are_those_of_the_known_latencies(triage, analyst) -> None:
    # 21 proposals decided after 1, 2, ... 21 minutes: the median is 11 minutes.
    for minutes in range(1, 22):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=minutes * 3),
            decided_after=timedelta(minutes=minutes),
            analyst=analyst,
            escalated=minutes > 15,
        )
    report = reports.latency(WINDOW)
    label, n, p50, p90, p99 = _row(report, "Latency overall", "submission → final decision")
    assert n == 21
    assert p50.value == pytest.approx(660.0)
    assert p50.text == "11.0 min"
    # 21 values are too few for a p90 or a p99: the report says so instead of a number.
    assert p90.text == "not enough data"
    assert p99.text == "not enough data"
    by_analyst = _row(report, "Latency by analyst", analyst.username)
    assert by_analyst[1] == 21 and by_analyst[2].value == pytest.approx(660.0)
    sla = {row[0]: row[1] for row in report.tables[1].rows}
    assert sla["decided after 15 min"] == 6
    assert sla[reports.SLA_BREACHES] == 6
    assert sla["escalated"] == 6
    assert "Half of the 21 proposals decided by analysts were decided within 11.0 min" in (
        report.finding
    )
    assert (
        "6 of the 21 proposals judged against the SLA (29%) were not decided within the "
        "15-minute SLA: 6 decided late." in report.finding
    )


@pytest.mark.django_db
def test_sla_is_configurable(triage, analyst) -> None:
    for minutes in range(1, 22):
        proposal(triage, created_at=BASE, decided_after=timedelta(minutes=minutes))
    strict = reports.latency(reports.Filters(since=WINDOW.since, until=WINDOW.until, sla_minutes=5))
    sla = {row[0]: row[1] for row in strict.tables[1].rows}
    assert sla["decided after 5 min"] == 16


@pytest.mark.django_db
def test_a_small_sample_says_not_enough_data(triage, analyst, manager, client: Client) -> None:
    for minutes in (1, 2, 3):
        proposal(triage, created_at=BASE, decided_after=timedelta(minutes=minutes))
    report = reports.latency(WINDOW)
    assert report.points[0].text == (
        "Not enough data: 3 proposals decided by analysts in this period."
    )
    assert _row(report, "Latency overall", "submission → final decision")[2].value is None
    client.force_login(manager)
    page = client.get("/reports/", {"since": "2026-11-17", "until": "2026-11-19"})
    assert page.status_code == 200
    # The population is marked with its definition; the sentence reads the same.
    shown = re.sub(r"<[^>]+>", "", page.content.decode())
    assert "Not enough data: 3 proposals decided by analysts" in shown


@pytest.mark.django_db
def test_two_person_first_and_final_latency(triage, analyst, senior) -> None:
    for index in range(20):
        created = BASE + timedelta(minutes=index)
        item = proposal(
            triage,
            created_at=created,
            decided_after=timedelta(minutes=10),
            criticality="critical",
            required_approvals=2,
            analyst=senior,
        )
        # The first of the two approvals came after 4 minutes.
        item.decisions.create(
            analyst=analyst, verdict="approve", created_at=created + timedelta(minutes=4)
        )
    report = reports.latency(WINDOW)
    first = _row(report, "Latency overall", "two-person: → first approval")
    final = _row(report, "Latency overall", "two-person: → final approval")
    assert first[1] == final[1] == 20
    assert first[2].value == pytest.approx(240.0)
    assert final[2].value == pytest.approx(600.0)


def _shift(analyst, triage, verdicts: str, cards: list[float], every: int = 5) -> list:
    """One decision every `every` minutes from BASE; 'a' approve, 'r' reject."""
    items = []
    for index, (verdict, card) in enumerate(zip(verdicts, cards, strict=True)):
        created = BASE + timedelta(minutes=every * index) - timedelta(minutes=1)
        items.append(
            proposal(
                triage,
                created_at=created,
                decided_after=timedelta(minutes=1),
                status="approved" if verdict == "a" else "rejected",
                analyst=analyst,
                card=card,
                execution="succeeded" if verdict == "a" else None,
            )
        )
    return items


@pytest.mark.django_db
def test_fatigue_figures_of_a_known_shift(triage, analyst) -> None:
    verdicts = "a" * 10 + "r" + "a" * 14  # 25 decisions, longest approval run 14
    cards = [2.0] * 20 + [30.0] * 5  # 20 of 25 under the 4 s rubber-stamp line
    items = _shift(analyst, triage, verdicts, cards)
    items[3].execution.status = "rolled_back"
    items[3].execution.save(update_fields=["status"])
    [row] = [r for r in reports.fatigue_rows(WINDOW) if r.shift == "all"]
    assert row.decisions == 25
    assert row.approval_rate.text == "96%"
    assert row.card.value == pytest.approx(2.0)
    assert row.rubber_share.value == pytest.approx(0.8)
    assert row.longest_streak == 14
    assert row.undone == 1
    assert row.after_hours == 0
    # 09:00 to 11:00: decisions in three clock hours.
    assert row.per_hour.value == pytest.approx(25 / 3)
    # The shift lasts 2 h, but each of its end hours holds only 12 decisions: too few.
    assert row.first_n == 12 and row.last_n == 12
    assert row.first_hour.text == "not enough data"
    report = reports.fatigue(WINDOW)
    assert report.flagged
    assert (
        f"{analyst.username} approved 96% of 25 proposals with a median of 2 s on the card"
        in report.finding
    )


@pytest.mark.django_db
def test_time_on_card_falling_over_a_long_shift_is_flagged(triage, analyst) -> None:
    # Three hours, a decision every 2 minutes: 30 in the first hour at 40 s on the card,
    # then 5 s; every tenth one rejected, so the longest approval run is 9.
    n = 91
    cards = [40.0 if i < 30 else 5.0 for i in range(n)]
    verdicts = "".join("r" if i % 10 == 0 else "a" for i in range(n))
    _shift(analyst, triage, verdicts, cards, every=2)
    [row] = [r for r in reports.fatigue_rows(WINDOW) if r.shift == "all"]
    assert (row.first_n, row.last_n) == (30, 30)
    assert row.first_hour.value == pytest.approx(40.0)
    assert row.last_hour.value == pytest.approx(5.0)
    assert row.longest_streak == 9
    assert row.shifts == 1
    report = reports.fatigue(WINDOW)
    assert "alice's time on card falls from 40 s in a shift's first hour to 5.0 s" in (
        report.finding
    )


@pytest.mark.django_db
def test_a_long_pause_starts_a_new_shift(triage, analyst) -> None:
    _shift(analyst, triage, "a" * 5, [10.0] * 5, every=200)  # 3 h 20 min between decisions
    [row] = [r for r in reports.fatigue_rows(WINDOW) if r.shift == "all"]
    assert row.shifts == 5


@pytest.mark.django_db
def test_trust_recommends_promotion_at_the_threshold_the_numbers_support(triage, analyst) -> None:
    for index in range(60):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            confidence=0.85,
            analyst=analyst,
            execution="succeeded",
        )
    for index in range(20):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            confidence=0.65,
            status="approved" if index % 2 else "rejected",
            analyst=analyst,
            execution="succeeded" if index % 2 else None,
        )
    rows, calibration = reports.trust_rows(WINDOW)
    [row] = [r for r in rows if r.action == "isolate_host"]
    assert row.level == 2
    assert (row.proposals, row.decided, row.approved) == (80, 80, 70)
    assert row.recommendation().startswith(
        "promote to level 3 at threshold 0.70: 60 of 60 proposals decided by analysts at or "
        "above 0.70 on non-critical targets"
    )
    # Calibration: half approved in the 0.6–0.7 band, all in 0.8–0.9.
    assert calibration["triage-bot"][2] == (20, 10)
    assert calibration["triage-bot"][4] == (60, 60)
    report = reports.trust(WINDOW)
    assert "triage-bot is ready for level 3 on isolate_host at threshold 0.70" in report.finding


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["trust", "readiness"])
def test_trust_and_readiness_read_the_period_of_proposals_once(triage, analyst, page) -> None:
    # Counts, scans by threshold and calibration bands are sums of one statement's slices.
    for index in range(6):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            confidence=0.55 + index * 0.08,
            analyst=analyst,
            execution="succeeded",
        )
    statements: list[str] = []

    def keep(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        statements.append(sql)
        return execute(sql, params, many, context)

    with periods.exact(), connection.execute_wrapper(keep):
        if page == "trust":
            reports.trust(WINDOW)
        else:
            readiness(triage, WINDOW)
    grouped = [s for s in statements if "approvals_proposal" in s and "GROUP BY" in s]
    assert len(grouped) == 1, grouped


@pytest.mark.django_db
def test_trust_recommends_demotion_on_the_automatic_runs_and_says_why(triage) -> None:
    # block_ip is level 3 (reversible): 25 runs without a human, 4 failed and 3 rolled back.
    outcomes = ["succeeded"] * 18 + ["failed"] * 4 + ["rolled_back"] * 3
    for index, outcome in enumerate(outcomes):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            action="block_ip",
            status="auto_approved",
            confidence=0.95,
            execution=outcome,
        )
    [row] = [r for r in reports.trust_rows(WINDOW)[0] if r.action == "block_ip"]
    assert row.level == 3
    assert (row.auto, row.auto_executed, row.auto_bad) == (25, 25, 7)
    assert row.recommendation() == (
        "demote to level 2: 7 of 25 automatic runs (28%) failed or were rolled back"
    )
    [point] = reports.trust(WINDOW).points
    assert point.tone == reports.BAD
    assert point.text == (
        "triage-bot should lose its autonomy on block_ip (level 3): 7 of 25 automatic runs "
        "(28%) failed or were rolled back; at level 2 an analyst would decide each of them."
    )


@pytest.mark.django_db
def test_trust_below_the_minimum_sample(triage, analyst) -> None:
    for index in range(5):
        proposal(triage, created_at=BASE + timedelta(minutes=index), analyst=analyst)
    [row] = reports.trust_rows(WINDOW)[0]
    assert row.recommendation() == (
        "not enough data (5 decided by analysts or ran without a human, 20 needed)"
    )
    assert row.approval_rate.text == "not enough data"


@pytest.mark.django_db
def test_threshold_what_if_counts(triage, analyst) -> None:
    # block_ip is granted level 3 (reversible); the policy's auto threshold is 0.90.
    plan = [(0.85, "approved")] * 5 + [(0.85, "rejected")] * 3 + [(0.7, "rejected")] * 4
    plan += [(0.6, "approved")] * 10 + [(0.85, "approved")]
    for index, (confidence, status) in enumerate(plan):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            action="block_ip",
            confidence=confidence,
            status=status,
            criticality="critical" if index == len(plan) - 1 else "medium",
            analyst=analyst,
        )
    proposal(triage, created_at=BASE, action="block_ip", confidence=0.95, status="auto_approved")
    # isolate_host is level 2: never counted under the grants as they are.
    proposal(triage, created_at=BASE, confidence=0.99, status="rejected", analyst=analyst)
    f = reports.Filters(since=WINDOW.since, until=WINDOW.until, threshold=0.8)
    total = reports.whatif_rows(f, 0.8)[0]
    assert total.label == "all"
    assert total.sent == 24
    # 22 block_ip on medium targets; the critical one always needs a human.
    assert total.covered == 22
    # 8 of those at 0.85.
    assert total.would_auto == 8
    assert total.rejected == 3
    assert (total.auto_now, total.auto_below) == (1, 0)
    curve = {w.label: w for w in reports.whatif_curve(f)}
    assert (curve["0.80"].would_auto, curve["0.80"].rejected) == (8, 3)
    assert (curve["0.70"].would_auto, curve["0.70"].rejected) == (12, 7)
    assert (curve["0.60"].would_auto, curve["0.60"].rejected) == (22, 7)
    report = reports.whatif(f)
    assert (
        "of the 24 proposals sent to analysts, 22 were covered by such grants (on a "
        "non-critical target), and 8 of those were at or above 0.80: they would have run "
        "without a human. Analysts had rejected 3 of those 8." in report.finding
    )
    everything = reports.whatif_rows(
        reports.Filters(since=WINDOW.since, until=WINDOW.until, scope="reversible"), 0.8
    )[0]
    assert everything.would_auto == 9 and everything.rejected == 4  # isolate_host counted now


@pytest.mark.postgres
@pytest.mark.django_db
def test_percentiles_match_postgresql_percentile_cont() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("percentile_cont is PostgreSQL's")
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3, 5.8]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY v) "
            "FROM unnest(%s::float8[]) AS v",
            [values],
        )
        expected = cursor.fetchone()[0]
    assert [reports.percentile(values, q) for q in (0.5, 0.9, 0.99)] == pytest.approx(expected)


@pytest.mark.django_db
def test_seeded_history_tells_the_demo_story_and_keeps_the_chain_intact() -> None:
    # As `make run` seeds it, so that bench.demo_story, which checks the story at every hour
    # of the week the same way, covers whatever hour this runs at.
    call_command("seed_demo", weeks=4, pending=0, stdout=io.StringIO())
    assert Proposal.objects.count() > 500
    assert verify_chain().ok
    told = story_told()
    assert not told.problems, told.problems


# --- pages, permissions and CSV --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/reports/", "/reports/latency.csv", "/audit/"])
def test_analysts_may_not_read_reports(client: Client, analyst, path: str) -> None:
    client.force_login(analyst)
    assert client.get(path).status_code == 403


@pytest.mark.django_db
def test_anonymous_is_sent_to_sign_in(client: Client) -> None:
    response = client.get("/reports/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["latency", "fatigue", "trust", "whatif"])
def test_each_report_renders_a_chart_table_and_finding(
    client: Client, manager, triage, analyst, name: str
) -> None:
    _shift(analyst, triage, "a" * 24 + "r", [2.0] * 25)
    client.force_login(manager)
    response = client.get(
        "/reports/", {"report": name, "since": "2026-11-17", "until": "2026-11-19"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and "<script" not in html.split("<main", 1)[1]
    assert 'id="finding"' in html and "<table" in html
    assert f'href="/reports/{name}.csv?' in html


@pytest.mark.django_db
def test_unknown_report_is_404(client: Client, manager) -> None:
    client.force_login(manager)
    assert client.get("/reports/", {"report": "nope"}).status_code == 404
    assert client.get("/reports/nope.csv").status_code == 404


@pytest.mark.django_db
def test_fatigue_csv_holds_what_the_page_shows(client: Client, manager, triage, analyst) -> None:
    _shift(analyst, triage, "a" * 24 + "r", [2.0] * 25)
    client.force_login(manager)
    response = client.get(
        "/reports/fatigue.csv", {"since": "2026-11-17", "until": "2026-11-19", "analyst": "alice"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:2] == ["report", "Approval fatigue"]
    assert rows[1][1].startswith("alice approved 96% of 25 proposals with a median of 2 s")
    header = rows[2]
    alice = next(r for r in rows if r[1:3] == ["alice", "all"])
    record = dict(zip(header, alice, strict=True))
    assert record["decisions"] == "25"
    assert record["approval rate"] == "0.9600"
    assert record["under 4 s"] == "1.0000"
    assert record["longest approval streak"] == "24"
    assert record["first hour on card"] == "not enough data"


@pytest.mark.django_db
def test_filters_narrow_the_report(client: Client, manager, triage, analyst, analyst2) -> None:
    for minutes in range(1, 22):
        proposal(triage, created_at=BASE, decided_after=timedelta(minutes=minutes), analyst=analyst)
    proposal(triage, created_at=BASE, decided_after=timedelta(minutes=90), analyst=analyst2)
    only_bob = reports.latency(
        reports.Filters(since=WINDOW.since, until=WINDOW.until, analyst="bob")
    )
    assert _row(only_bob, "Latency overall", "submission → final decision")[1] == 1
    elsewhere = reports.latency(
        reports.Filters(since=WINDOW.since, until=WINDOW.until, action="block_ip")
    )
    assert _row(elsewhere, "Latency overall", "submission → final decision")[1] == 0
    earlier = reports.latency(
        reports.Filters(since=BASE - timedelta(days=9), until=BASE - timedelta(days=2))
    )
    assert _row(earlier, "Latency overall", "submission → final decision")[1] == 0
