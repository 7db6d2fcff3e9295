"""The report pages as a manager reads them: a refused filter shown in the form, findings
coloured by what they mean, and each population under one name, one count and one definition
on every tab."""

from __future__ import annotations

import html as markup
import re
from datetime import timedelta

import pytest
from django.test import Client

from audit import reports
from tests.audit.history_builder import BASE, proposal

WINDOW = reports.Filters(since=BASE - timedelta(days=1), until=BASE + timedelta(days=1))
PERIOD = {"since": "2026-11-17", "until": "2026-11-18"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def triage(agent_with_key):
    return agent_with_key.agent


def _text(cell: str) -> str:
    return markup.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def _tables(page: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every report table on the page: its headers and its rows, as text."""
    found = []
    for body in re.findall(r'<table class="report-table">(.*?)</table>', page, re.S):
        headers = [_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", body, re.S)]
        rows = [
            [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body.split("</thead>")[1], re.S)
        ]
        found.append((headers, rows))
    return found


# --- a bad filter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "query", "name", "field"),
    [
        ("latency", {"since": "2026-02-30"}, "since", "From"),
        ("latency", {"since": "last tuesday"}, "since", "From"),
        ("latency", {"until": "2026-13-01"}, "until", "Until"),
        ("latency", {"since": "2026-11-19", "until": "2026-11-18"}, "until", "Until"),
        ("latency", {"sla": "abc"}, "sla", "SLA (minutes)"),
        ("latency", {"sla": "-5"}, "sla", "SLA (minutes)"),
        ("fatigue", {"agent": "nobody-bot"}, "agent", "Agent"),
        ("trust", {"action": "format_disk"}, "action", "Action"),
        ("latency", {"analyst": "mallory"}, "analyst", "Analyst"),
        ("whatif", {"threshold": "high"}, "threshold", "Auto threshold"),
        ("whatif", {"scope": "everything"}, "scope", "Replay"),
    ],
)
def test_a_bad_filter_shows_the_form_again_with_that_field_marked_and_computes_nothing(
    client: Client, manager, triage, analyst, report: str, query: dict, name: str, field: str
) -> None:
    proposal(triage, created_at=BASE, analyst=analyst)
    client.force_login(manager)
    for url in ("/reports/", f"/reports/{report}.csv"):
        response = client.get(url, {"report": report, **query})
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/html")
        page = response.content.decode()
        assert 'aria-label="Main"' in page  # inside the console's layout
        assert f"Bad filter: {field}</h2>" in page
        # The form again, the refused input (and only it) marked, its reason beside it.
        assert '<form class="filters"' in page
        tag = re.search(rf'<(?:input|select) name="{name}"[^>]*>', page).group(0)
        assert 'aria-invalid="true"' in tag and f'aria-describedby="err-{name}"' in tag
        assert page.count('aria-invalid="true"') == 1
        error = re.search(rf'<span class="field-error" id="err-{name}">([^<]+)</span>', page)
        assert error and markup.unescape(error.group(1)).strip()
        # What was sent stays in the form, to be corrected rather than typed again.
        assert markup.escape(query[name]) in page
        # Nothing computed: no finding, no table, no chart.
        assert 'id="finding"' not in page and "report-table" not in page and "<svg" not in page


def test_a_good_filter_marks_nothing(client: Client, manager) -> None:
    client.force_login(manager)
    page = client.get("/reports/", {"report": "latency", "sla": "30", **PERIOD}).content.decode()
    assert "aria-invalid" not in page and "field-error" not in page


# --- tones, decided where the finding is computed --------------------------------------------


def _sla_point(report: reports.Report) -> reports.Point:
    return next(p for p in report.points if "SLA" in p.text)


def test_every_proposal_decided_within_the_sla_is_good_news(triage, analyst) -> None:
    for index in range(25):
        proposal(triage, created_at=BASE + timedelta(minutes=index), analyst=analyst)
    point = _sla_point(reports.latency(WINDOW))
    assert point.tone == reports.GOOD
    assert point.text.startswith("All 25 proposals")


def test_a_few_late_decisions_are_a_warning_and_many_are_bad(triage, analyst) -> None:
    for index in range(25):
        late = index == 0
        proposal(
            triage,
            created_at=BASE + timedelta(minutes=index),
            analyst=analyst,
            decided_after=timedelta(minutes=40 if late else 5),
        )
    assert _sla_point(reports.latency(WINDOW)).tone == reports.WARNING  # 1 of 25: 4%
    strict = reports.Filters(since=WINDOW.since, until=WINDOW.until, sla_minutes=4)
    assert _sla_point(reports.latency(strict)).tone == reports.BAD  # all 25 late


def test_the_page_styles_each_point_by_its_tone(client: Client, manager, triage, analyst) -> None:
    for index in range(25):
        proposal(triage, created_at=BASE + timedelta(minutes=index), analyst=analyst)
    client.force_login(manager)
    page = client.get("/reports/", {"report": "latency", **PERIOD}).content.decode()
    good = re.search(r'<li class="tone-good"><span class="tone">Good</span> All 25', page)
    assert good, "good news is marked good"
    assert not re.search(r'class="[^"]*tone-bad[^"]*"><span class="tone">[^<]*</span> All', page)


# --- one population, one name, one count -----------------------------------------------------


def test_a_population_shows_the_same_count_and_definition_on_every_tab(
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
    proposal(triage, created_at=BASE, action="block_ip", status="pending", decided_after=None)
    proposal(triage, created_at=BASE, action="block_ip", status="auto_approved", confidence=0.95)
    client.force_login(manager)
    counts: dict[str, set[str]] = {reports.SENT: set(), reports.DECIDED: set(), reports.AUTO: set()}
    pages = {}
    for name in ("latency", "trust", "whatif"):
        page = client.get("/reports/", {"report": name, **PERIOD}).content.decode()
        pages[name] = page
        for headers, rows in _tables(page):
            for row in rows:
                # A population as a row label (latency's SLA table) ...
                if row and row[0] in counts and len(row) > 1:
                    counts[row[0]].add(row[1])
                # ... or as a column over the whole period (what-if's "all", trust's one row).
                if row and (row[0] == "all" or (name == "trust" and len(rows) == 1)):
                    for population in counts:
                        if population in headers and len(row) == len(headers):
                            counts[population].add(row[headers.index(population)])
    assert counts == {reports.SENT: {"27"}, reports.DECIDED: {"25"}, reports.AUTO: {"1"}}
    # Wherever it is counted, its one definition is at hand.
    for population in counts:
        definition = markup.escape(reports.DEFINITIONS[population])
        holders = [name for name, page in pages.items() if f'title="{definition}"' in page]
        assert len(holders) >= 2, (population, holders)
    assert "queued for a human" not in str(pages) and "waited for an analyst" not in str(pages)


def test_a_finding_marks_the_populations_it_counts_with_their_definition(
    client: Client, manager, triage, analyst
) -> None:
    for index in range(25):
        proposal(triage, created_at=BASE + timedelta(minutes=index), analyst=analyst)
    client.force_login(manager)
    page = client.get("/reports/", {"report": "latency", **PERIOD}).content.decode()
    finding = re.search(r'id="finding">(.*?)</ul>', page, re.S).group(1)
    definition = markup.escape(reports.DEFINITIONS[reports.DECIDED])
    assert f'<abbr class="population" title="{definition}">{reports.DECIDED}</abbr>' in finding
    # Plain words are not mistaken for populations.
    assert reports.marked("three proposals and two decisions.") == [
        ("three proposals and two decisions.", "")
    ]
