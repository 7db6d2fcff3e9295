"""Report figures that must be right and say what they count, on hand-built histories.

Each report has one implementation for PostgreSQL and SQLite alike: these tests check it on
whichever database the suite runs on (PostgreSQL by default; SQLite is what `make run` uses).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from audit import reports
from soc_console import settings as console_settings
from tests import factories
from tests.audit.history_builder import BASE, proposal

WINDOW = reports.Filters(since=BASE - timedelta(days=1), until=BASE + timedelta(days=1))


@pytest.fixture
def triage(agent_with_key):
    # Grants: block_ip 3, isolate_host 2, kill_process 3 (irreversible), disable_user 4.
    return agent_with_key.agent


def _table(report: reports.Report, title: str) -> reports.Table:
    return next(t for t in report.tables if t.title == title)


def _rows_by_first(report: reports.Report, title: str) -> dict:
    return {row[0]: row[1:] for row in _table(report, title).rows}


# --- calibration bands and threshold scans ---------------------------------------------------


@pytest.mark.django_db
def test_a_confidence_on_a_band_bound_falls_in_the_band_it_opens(triage, analyst) -> None:
    # 20 at 0.65, half approved; 20 at exactly 0.7 and 20 at exactly 0.9, all approved.
    # (0.7 - 0.5) / 0.1 is 1.9999999999999996: a division puts 0.7 in the 0.6–0.7 band.
    for index in range(20):
        at = BASE + timedelta(minutes=index)
        proposal(
            triage,
            created_at=at,
            confidence=0.65,
            status="approved" if index % 2 else "rejected",
            analyst=analyst,
        )
        proposal(triage, created_at=at, confidence=0.7, analyst=analyst)
        proposal(triage, created_at=at, confidence=0.9, analyst=analyst)
    _, calibration = reports.trust_rows(WINDOW)
    assert calibration["triage-bot"] == {2: (20, 10), 3: (20, 20), 5: (20, 20)}
    bands = {row[1]: (row[2], row[3].text) for row in reports.trust(WINDOW).tables[1].rows}
    assert bands["0.6–0.7"] == (20, "50%")
    assert bands["0.7–0.8"] == (20, "100%")
    assert bands["0.8–0.9"] == (0, "not enough data")


@pytest.mark.django_db
def test_threshold_scans_compare_the_confidence_as_routing_does(triage, analyst) -> None:
    # Just below 0.70: routing at an auto threshold of 0.70 would not run these alone.
    below = 0.7 - 5e-10
    for index in range(50):
        at = BASE + timedelta(minutes=index)
        proposal(triage, created_at=at, confidence=below, analyst=analyst)
        proposal(triage, created_at=at, action="block_ip", confidence=below, analyst=analyst)
    proposal(triage, created_at=BASE, action="block_ip", confidence=below, status="auto_approved")
    [row] = [r for r in reports.trust_rows(WINDOW)[0] if r.action == "isolate_host"]
    assert row.scan.get(0.7, (0, 0)) == (0, 0)
    assert row.scan[0.65] == (50, 50)
    at_070 = reports.whatif_rows(WINDOW, 0.7)[0]
    assert at_070.would_auto == 0
    assert at_070.auto_below == 1
    curve = {w.label: w for w in reports.whatif_curve(WINDOW)}
    assert (curve["0.70"].would_auto, curve["0.65"].would_auto) == (0, 50)


# --- the queue's peak ------------------------------------------------------------------------


@pytest.mark.django_db
def test_peak_queue_depth_is_the_running_peak_not_a_sample(triage) -> None:
    # One proposal already waiting when the period starts, decided in its middle; five arrive
    # between 09:10 and 09:14 and are decided by 09:30, so that every hourly sample (the end
    # of each hour) sees at most the one that was waiting.
    proposal(
        triage,
        created_at=WINDOW.since - timedelta(minutes=30),
        decided_after=timedelta(hours=30),
    )
    for index in range(5):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=10 + index),
            decided_after=timedelta(minutes=15 - index),
        )
    # Withdrawn and expired proposals leave the queue too.
    proposal(triage, created_at=BASE + timedelta(hours=2), status="withdrawn")
    proposal(triage, created_at=BASE + timedelta(hours=2), status="expired")
    queue = reports.queue_depth(WINDOW)
    assert queue.peak == 6
    assert queue.peak_at == BASE + timedelta(minutes=14)
    by_hour = {label: (most, end) for label, most, end in queue.series}
    assert by_hour["11-18 09:00"] == (6, 1)
    assert by_hour["11-18 11:00"] == (3, 1)
    assert by_hour["11-18 08:00"] == (1, 1)
    assert by_hour["11-18 14:00"] == (1, 0)  # decided 30 h after 08:30 the day before
    table = _rows_by_first(reports.latency(WINDOW), "SLA and queue")
    assert table[reports.PEAK] == [6, "2026-11-18 09:14"]


@pytest.mark.django_db
def test_a_period_of_any_length_charts_at_most_400_intervals_with_the_same_peak(triage) -> None:
    """A manager who asks for everything since 1900 gets the queue in intervals of several
    days (the chart stays readable and the page fast), and the same running peak."""
    for index in range(5):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=10 + index),
            decided_after=timedelta(minutes=15 - index),
        )
    since_1900 = reports.Filters(
        since=datetime(1900, 1, 1, tzinfo=UTC), until=BASE + timedelta(days=1)
    )
    long, short = reports.queue_depth(since_1900), reports.queue_depth(WINDOW)
    assert len(long.series) <= 400 < (since_1900.until - since_1900.since).days
    assert (
        (long.peak, long.peak_at)
        == (short.peak, short.peak_at)
        == (5, BASE + timedelta(minutes=14))
    )
    assert max(most for _, most, _ in long.series) == 5
    page = Client()
    page.force_login(factories.user("maya", factories.MANAGER))
    answer = page.get("/reports/?report=latency&since=1900-01-01&until=2026-11-19")
    assert answer.status_code == 200
    # A daily chart since 1900 made a page of about 3 MB; the default period's is about 35 KB.
    assert len(answer.content) < 200_000


# --- the period ------------------------------------------------------------------------------


def _form_values(html: str) -> dict[str, str]:
    return {
        name: value
        for name, value in re.findall(
            r'<input name="(since|until)" type="date" value="([^"]*)"', html
        )
    }


@pytest.mark.django_db
def test_the_default_period_is_the_one_the_form_shows_and_applying_it_changes_nothing(
    client: Client, manager, triage, analyst
) -> None:
    today = timezone.now().date()
    first_day = today - timedelta(days=reports.DEFAULT_DAYS - 1)
    midnight = datetime.combine(first_day, datetime.min.time(), UTC)
    # One proposal a minute into the period's first day, one a minute into the day before:
    # a period that starts at the time of day of the request would count neither or one
    # of them, and applying a form that shows only dates would count the other too.
    proposal(triage, created_at=midnight + timedelta(minutes=1), analyst=analyst)
    proposal(triage, created_at=midnight - timedelta(days=1, minutes=-1), analyst=analyst)
    client.force_login(manager)
    page = client.get("/reports/", {"report": "trust"}).content.decode()
    form = _form_values(page)
    assert form == {"since": f"{first_day:%Y-%m-%d}", "until": f"{today:%Y-%m-%d}"}
    assert (
        f"Proposals submitted from {first_day:%Y-%m-%d} 00:00 to {today:%Y-%m-%d} 24:00 (UTC)"
        in (page)
    )
    applied = client.get("/reports/", {"report": "trust", **form}).content.decode()
    assert _form_values(applied) == form

    def proposals(html: str) -> str:
        return re.search(r"<td>isolate_host</td><td>2</td><td>(\d+)</td>", html).group(1)

    assert proposals(page) == proposals(applied) == "1"


@pytest.mark.django_db
def test_a_period_given_to_the_second_round_trips_through_the_form(client: Client, manager) -> None:
    client.force_login(manager)
    page = client.get(
        "/reports/", {"since": "2026-11-17T10:30:15", "until": "2026-11-18"}
    ).content.decode()
    assert '<input name="since" type="datetime-local" step="1" value="2026-11-17T10:30:15">' in page
    assert '<input name="until" type="date" value="2026-11-18">' in page
    assert "from 2026-11-17 10:30:15 to 2026-11-18 24:00 (UTC)" in page


# --- fatigue under filters -------------------------------------------------------------------


def _decide(
    agent, analyst, at: datetime, *, action: str, approve: bool = True, card: float = 20.0
) -> None:
    proposal(
        agent,
        created_at=at - timedelta(minutes=1),
        decided_after=timedelta(minutes=1),
        action=action,
        status="approved" if approve else "rejected",
        analyst=analyst,
        card=card,
    )


@pytest.mark.django_db
def test_filters_choose_decisions_but_shifts_and_streaks_come_from_all_of_them(
    triage, analyst
) -> None:
    # One shift from 04:50 (a night shift) to 14:00, with a decision every hour or so; the
    # isolate_host decisions alone would show a 5-hour gap, and a streak joined across the
    # block_ip rejection between them.
    start = datetime(2026, 11, 18, 4, 50, tzinfo=UTC)
    plan = [
        (0, "block_ip", True),
        (20, "isolate_host", True),  # 05:10
        (40, "isolate_host", True),
        (70, "block_ip", False),  # a rejection breaks the streak
        (90, "isolate_host", True),
        (150, "block_ip", True),
        (210, "block_ip", True),
        (270, "block_ip", True),
        (330, "block_ip", True),
        (390, "isolate_host", True),  # 11:20
        (400, "isolate_host", True),
    ]
    for minutes, action, approve in plan:
        _decide(triage, analyst, start + timedelta(minutes=minutes), action=action, approve=approve)
    everything = {r.shift: r for r in reports.fatigue_rows(WINDOW)}
    assert everything["all"].shifts == 1
    assert everything["all"].longest_streak == 7
    only = reports.Filters(since=WINDOW.since, until=WINDOW.until, action="isolate_host")
    rows = {r.shift: r for r in reports.fatigue_rows(only)}
    assert set(rows) == {"all", "night"}  # the shift began at 04:50, not at 05:10
    assert rows["all"].decisions == 5
    assert rows["all"].shifts == 1
    # The three isolate_host approvals after the rejection, and no more.
    assert rows["all"].longest_streak == 3
    report = reports.fatigue(only)
    table = _table(report, "Fatigue by analyst and shift")
    assert "decisions per active hour" in table.headers
    assert dict(report.definitions)[reports.SHIFTS].startswith("runs of one analyst's decisions")


# --- the SLA ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_sla_share_counts_only_proposals_whose_sla_can_be_judged(triage, analyst) -> None:
    now = timezone.now()
    since, until = now - timedelta(days=1), now + timedelta(minutes=1)
    for index in range(20):
        proposal(triage, created_at=now - timedelta(hours=3, minutes=index), analyst=analyst)
    for index in range(3):  # decided after 40 minutes: late
        proposal(
            triage,
            created_at=now - timedelta(hours=5, minutes=index),
            decided_after=timedelta(minutes=40),
            analyst=analyst,
        )
    for index in range(2):
        proposal(triage, created_at=now - timedelta(hours=6, minutes=index), status="expired")
    # Still inside their SLA: not judged yet.
    for index in range(4):
        proposal(
            triage,
            created_at=now - timedelta(minutes=5 + index),
            status="pending",
            decided_after=None,
        )
    proposal(triage, created_at=now - timedelta(hours=1), status="pending", decided_after=None)
    # Withdrawn within the SLA: left out; after it: a breach.
    proposal(triage, created_at=now - timedelta(hours=2), status="withdrawn")
    proposal(
        triage,
        created_at=now - timedelta(hours=2),
        status="withdrawn",
        decided_after=timedelta(minutes=20),
    )
    report = reports.latency(reports.Filters(since=since, until=until))
    table = _rows_by_first(report, "SLA and queue")
    assert table[reports.SENT][0] == 32
    assert table[reports.DECIDED][0] == 23
    assert table["decided after 15 min"][0] == 3
    assert table[reports.EXPIRED][0] == 2
    assert table[reports.WITHDRAWN][0] == 2
    assert table["withdrawn after 15 min"][0] == 1
    assert table[reports.PENDING][0] == 5
    assert table["still pending after 15 min"][0] == 1
    assert table[reports.SLA_JUDGED][0] == 27
    assert table[reports.SLA_BREACHES][0] == 7
    [point] = [p for p in report.points if "SLA" in p.text]
    # The parts add up to the whole, and the whole is out of the judged proposals.
    assert point.text == (
        "7 of the 27 proposals judged against the SLA (26%) were not decided within the "
        "15-minute SLA: 3 decided late, 2 expired unanswered, 1 withdrawn after it ran out "
        "and 1 still pending past it."
    )
    assert point.tone == reports.BAD


# --- one name per population -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_population_has_one_name_and_one_count_on_every_tab_and_csv(
    client: Client, manager, triage, analyst
) -> None:
    for index in range(25):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            action="block_ip",
            status="approved" if index % 5 else "rejected",
            analyst=analyst,
        )
    proposal(triage, created_at=BASE, action="block_ip", status="expired")
    proposal(triage, created_at=BASE, action="block_ip", status="withdrawn")
    proposal(triage, created_at=BASE, action="block_ip", status="pending", decided_after=None)
    proposal(triage, created_at=BASE, action="block_ip", status="auto_approved", confidence=0.95)
    latency = _rows_by_first(reports.latency(WINDOW), "SLA and queue")
    whatif = _rows_by_first(reports.whatif(WINDOW), "What-if at threshold 0.80")["all"]
    whatif_headers = _table(reports.whatif(WINDOW), "What-if at threshold 0.80").headers
    trust = reports.trust(WINDOW)
    trust_headers = _table(trust, "Trust by agent and action").headers
    [trust_row] = _table(trust, "Trust by agent and action").rows
    sent = whatif[whatif_headers.index(reports.SENT) - 1]
    assert latency[reports.SENT][0] == sent == 28
    assert latency[reports.DECIDED][0] == trust_row[trust_headers.index(reports.DECIDED)] == 25
    assert whatif[whatif_headers.index(reports.AUTO) - 1] == 1
    assert trust_row[trust_headers.index(reports.AUTO)] == 1
    client.force_login(manager)
    query = {"since": "2026-11-17", "until": "2026-11-18"}
    for name in ("latency", "whatif", "trust"):
        response = client.get(f"/reports/{name}.csv", query)
        rows = list(csv.reader(io.StringIO(response.content.decode())))
        definitions = {row[1]: row[2] for row in rows if row[0] == "definition"}
        assert definitions[reports.SENT if name != "trust" else reports.DECIDED]
        page = client.get("/reports/", {"report": name, **query}).content.decode()
        assert 'id="definitions"' in page
        counted = reports.AUTO if name != "latency" else reports.DECIDED
        assert f'class="defined" title="{reports.DEFINITIONS[counted]}"' in page
    # The old names of these populations are gone.
    for name in ("latency", "whatif"):
        text = str(reports.REPORTS[name](WINDOW))
        assert "queued for a human" not in text and "waited for an analyst" not in text


# --- shift bands and the time zone -----------------------------------------------------------


@pytest.mark.django_db
def test_shift_bands_and_the_report_time_zone_are_configurable(
    settings, client: Client, manager, triage, analyst
) -> None:
    settings.SHIFT_BANDS = console_settings.parse_shift_bands("early=06-14,late=14-22,owl=22-06")
    settings.REPORT_TIME_ZONE = "America/New_York"
    # 09:00 UTC is 04:00 in New York: an owl shift, in the 04:00 hour of day.
    for index in range(20):
        _decide(triage, analyst, BASE + timedelta(minutes=index), action="block_ip")
    [shift] = [r.shift for r in reports.fatigue_rows(WINDOW) if r.shift != "all"]
    assert shift == "owl"
    hours = _rows_by_first(reports.latency(WINDOW), "Latency by hour of day (America/New_York)")
    assert list(hours) == ["03:00", "04:00"]
    fatigue = reports.fatigue(WINDOW)
    assert "early 06–14, late 14–22, owl 22–06" in dict(fatigue.definitions)[reports.SHIFT]
    # A date in the form is a day in that time zone.
    client.force_login(manager)
    page = client.get(
        "/reports/", {"report": "fatigue", "since": "2026-11-18", "until": "2026-11-18"}
    ).content.decode()
    assert "from 2026-11-18 00:00 to 2026-11-18 24:00 (America/New_York)" in page
    assert "<td>owl</td>" in page


@pytest.mark.parametrize(
    "raw",
    [
        "day=05-12,afternoon=12-19",  # 19:00 to 05:00 in no band
        "day=05-13,afternoon=12-19,night=19-05",  # 12:00 in two
        "day=05-12,day=12-19,night=19-05",
        "day=5,afternoon=12-19",
        "day=07-07",
        "day=05-25,night=01-05",
    ],
)
def test_shift_bands_that_do_not_cover_the_day_once_are_refused(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("SHIFT_BANDS", raw)
    with pytest.raises(ImproperlyConfigured, match="SHIFT_BANDS"):
        console_settings.env_shift_bands("SHIFT_BANDS", "day=00-24")


def test_an_unknown_report_time_zone_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("REPORT_TIME_ZONE", "Mars/Olympus_Mons")
    with pytest.raises(ImproperlyConfigured, match="REPORT_TIME_ZONE"):
        console_settings.env_time_zone("REPORT_TIME_ZONE", "UTC")
    monkeypatch.setenv("REPORT_TIME_ZONE", "Europe/Paris")
    assert console_settings.env_time_zone("REPORT_TIME_ZONE", "UTC") == "Europe/Paris"


# --- recommendations -------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_agent_is_told_to_lose_autonomy_it_does_not_have(triage, analyst) -> None:
    # isolate_host is level 2: an analyst approves every proposal. A poor record (half
    # rejected, and a third of what analysts approved failed) is no autonomy to take away.
    for index in range(30):
        item = proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            status="approved" if index % 2 else "rejected",
            analyst=analyst,
            execution=("failed" if index % 6 == 1 else "succeeded") if index % 2 else None,
        )
        assert item.action == "isolate_host"
    [row] = reports.trust_rows(WINDOW)[0]
    assert row.recommendation() == (
        "keep level 2, not ready for more: analysts approved only 50% of 30"
    )
    [point] = reports.trust(WINDOW).points
    assert "lose" not in point.text
    assert point.text == (
        "triage-bot is not ready for more autonomy on isolate_host (level 2, nothing runs "
        "without an analyst): analysts approved only 50% of 30."
    )
    assert point.tone == reports.WARNING


@pytest.mark.django_db
def test_a_demotion_is_judged_on_the_runs_it_would_take_back(triage, analyst) -> None:
    # block_ip is level 3 at an auto threshold of 0.90. Below it, analysts reject most of
    # what the agent proposes; but its 25 runs without a human all went well, and those are
    # all that a demotion to level 2 would change.
    for index in range(25):
        at = BASE + timedelta(minutes=index)
        proposal(
            triage,
            created_at=at,
            action="block_ip",
            confidence=0.75,
            status="approved" if index < 5 else "rejected",
            analyst=analyst,
        )
        proposal(
            triage,
            created_at=at,
            action="block_ip",
            confidence=0.95,
            status="auto_approved",
            execution="succeeded",
        )
    [row] = reports.trust_rows(WINDOW)[0]
    assert row.approval_rate.text == "20%"
    assert row.recommendation() == (
        "keep level 3: 0 of 25 automatic runs (0%) failed or were rolled back"
    )
    assert "lose" not in reports.trust(WINDOW).finding


@pytest.mark.django_db
def test_promotion_evidence_leaves_out_critical_targets(triage, analyst) -> None:
    # 60 approvals at 0.85, but 40 of them on critical targets, which level 3 never runs
    # alone: only 20 count, fewer than the 50 a promotion needs.
    for index in range(60):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            confidence=0.85,
            criticality="critical" if index < 40 else "high",
            analyst=analyst,
            execution="succeeded",
        )
    [row] = reports.trust_rows(WINDOW)[0]
    assert row.scan[0.8] == (20, 20)
    assert not row.recommendation().startswith("promote")
    assert "ready for level 3" not in reports.trust(WINDOW).finding


# --- the what-if -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_what_if_counts_what_could_qualify_and_the_runs_a_threshold_takes_back(
    triage, analyst
) -> None:
    # Sent to analysts: 10 block_ip (level 3) at 0.85, 4 of them on critical targets, and 30
    # isolate_host (level 2, not covered by the grants as they are).
    for index in range(10):
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            action="block_ip",
            confidence=0.85,
            criticality="critical" if index < 4 else "medium",
            status="rejected" if index == 9 else "approved",
            analyst=analyst,
        )
    for index in range(30):
        proposal(triage, created_at=BASE + timedelta(minutes=index), analyst=analyst)
    # Ran without a human: 6 block_ip, 4 of them below 0.95.
    for confidence in (0.91, 0.92, 0.93, 0.94, 0.96, 0.99):
        proposal(
            triage,
            created_at=BASE,
            action="block_ip",
            confidence=confidence,
            status="auto_approved",
        )
    f = reports.Filters(since=WINDOW.since, until=WINDOW.until, threshold=0.8)
    report = reports.whatif(f)
    assert report.points[0].text == (
        "At an auto threshold of 0.80, with the level 3 and 4 grants as they are: of the 40 "
        "proposals sent to analysts, 6 were covered by such grants (on a non-critical target), "
        "and 6 of those were at or above 0.80: they would have run without a human."
    )
    assert report.points[1].text == "Analysts had rejected 1 of those 6."
    assert report.points[1].tone == reports.WARNING
    curve = {row[0]: row[1:] for row in _table(report, "What-if by threshold").rows}
    # At 0.95 nothing more would run alone, but 4 of the 6 automatic runs would need a human.
    assert curve["0.95"] == [0, 0, 4]
    assert curve["0.90"] == [0, 0, 0]
    assert curve["0.80"] == [6, 1, 0]


# --- bad filters and the finding's colours ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"sla": "abc"}, "SLA (minutes)"),
        ({"sla": "0"}, "SLA (minutes)"),
        ({"threshold": "nan"}, "Auto threshold"),
        ({"threshold": "1.5"}, "Auto threshold"),
        ({"since": "2026-02-30"}, "From"),
        ({"until": "9999-12-31"}, "Until"),
        ({"since": "2026-11-19", "until": "2026-11-18"}, "Until"),
        ({"scope": "everything"}, "Replay"),
        ({"agent": "nobody-bot"}, "Agent"),
        ({"action": "format_disk"}, "Action"),
    ],
)
def test_a_bad_filter_gets_a_problem_page_in_the_layout_naming_the_field(
    client: Client, manager, query: dict, field: str
) -> None:
    client.force_login(manager)
    for url in ("/reports/", "/reports/whatif.csv"):
        response = client.get(url, {"report": "whatif", **query})
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/html")
        html = response.content.decode()
        assert '<main id="main">' in html and 'aria-label="Main"' in html  # the layout
        assert f"Bad filter: {field}</h2>" in html
        assert re.search(r'<p id="problem">[^<]*' + re.escape(field), html)


@pytest.mark.django_db
def test_findings_are_coloured_by_meaning(
    client: Client, manager, triage, analyst, analyst2
) -> None:
    client.force_login(manager)
    query = {"since": "2026-11-17", "until": "2026-11-19"}
    empty = client.get("/reports/", {"report": "fatigue", **query}).content.decode()
    assert 'class="finding tone-neutral"' in empty
    for minutes in range(25):  # alice approves everything in 2 s: bad news
        _decide(triage, analyst, BASE + timedelta(minutes=minutes * 5), action="block_ip", card=2.0)
    for index in range(60):  # ready for level 3 on isolate_host: good news
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            confidence=0.85,
            analyst=analyst2,
            execution="succeeded",
        )
    trust = client.get("/reports/", {"report": "trust", **query}).content.decode()
    assert re.search(
        r'class="finding tone-good"[^>]*><span class="tone">Good</span> triage-bot', trust
    )
    assert "tone-bad" not in trust
    fatigue = client.get("/reports/", {"report": "fatigue", **query}).content.decode()
    assert re.search(
        r'class="finding tone-bad"[^>]*><span class="tone">Needs attention</span> alice approved',
        fatigue,
    )
