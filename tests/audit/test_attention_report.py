"""The fatigue report's attention checks: catch rate per analyst and by hour of shift, from
hand-built histories whose answers are known."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client

from audit import reports
from audit.reports import checks
from tests import factories
from tests.audit.history_builder import BASE, attention_check, proposal

pytestmark = pytest.mark.django_db

WINDOW = reports.Filters(since=BASE - timedelta(days=1), until=BASE + timedelta(days=2))


@pytest.fixture
def triage(agent_with_key: factories.AgentWithKey):
    return agent_with_key.agent


def _checks(analyst, start, outcomes: str, every: timedelta = timedelta(minutes=9)) -> None:
    """One check every `every` from `start`: 'c' caught, 'm' missed."""
    for index, outcome in enumerate(outcomes):
        attention_check(analyst, decided_at=start + every * index, caught=outcome == "c")


def test_catch_rate_per_analyst_is_what_each_caught(triage, analyst, analyst2, senior) -> None:
    # alice catches 9 of 12, bob 4 of 10 (named), sol decides 3: too few for a rate.
    proposal(triage, created_at=BASE, decided_after=timedelta(minutes=1), analyst=analyst)
    _checks(analyst, BASE + timedelta(minutes=5), "ccmccmcccmcc")
    _checks(analyst2, BASE + timedelta(minutes=6), "cmmcmmcmcm")
    _checks(senior, BASE + timedelta(minutes=7), "ccm")

    found = checks.attention(WINDOW)

    alice, bob, sol = (found.by_analyst[u.username] for u in (analyst, analyst2, senior))
    assert (alice.decided, alice.caught, alice.rate.text) == (12, 9, "75%")
    assert (bob.decided, bob.caught, bob.rate.text) == (10, 4, "40%")
    assert (sol.decided, sol.caught, sol.rate.text) == (3, 2, "not enough data")
    report = reports.fatigue(WINDOW)
    assert f"{analyst2.username} caught 4 of 10 attention checks (40%)" in report.finding
    assert f"{analyst.username} caught" not in report.finding  # 75% is not flagged
    table = next(t for t in report.tables if t.title == "Attention checks by analyst")
    # Every shift here starts at 09:00 UTC: in the day band.
    assert [row[:5] for row in table.rows] == [
        [analyst.username, "all", 12, 9, 3],
        [analyst.username, "day", 12, 9, 3],
        [analyst2.username, "all", 10, 4, 6],
        [analyst2.username, "day", 10, 4, 6],
        [senior.username, "all", 3, 2, 1],
        [senior.username, "day", 3, 2, 1],
    ]
    # Decisions on checks are not decisions in the other figures: alice gave one real one.
    rows = reports.fatigue_rows(WINDOW)
    [row] = [r for r in rows if r.analyst == analyst.username and r.shift == "all"]
    assert row.decisions == 1


def test_catch_rate_by_hour_of_shift_and_the_hour_attention_drops(triage, analyst) -> None:
    # One shift from 09:00 (its first decision): six checks in each of its first four hours,
    # caught 6, 5, 3 and 2 times. From hour 3 on the rate falls from 11 of 12 to 5 of 12.
    proposal(
        triage,
        created_at=BASE - timedelta(minutes=1),
        decided_after=timedelta(minutes=1),
        analyst=analyst,
    )
    for hour, outcomes in enumerate(["cccccc", "ccmccc", "cmcmcm", "mcmmcm"]):
        _checks(analyst, BASE + timedelta(hours=hour, minutes=5), outcomes)
    # A night shift from 20:00 and the next day's shift start afresh: their checks are in
    # hour 1, filed under the night and the day band.
    for start in (BASE + timedelta(hours=11), BASE + timedelta(days=1)):
        proposal(triage, created_at=start, decided_after=timedelta(minutes=1), analyst=analyst)
        attention_check(analyst, decided_at=start + timedelta(minutes=30), caught=True)

    found = checks.attention(WINDOW)

    assert {hour: (t.decided, t.caught) for hour, t in found.by_hour.items()} == {
        1: (8, 8),
        2: (6, 5),
        3: (6, 3),
        4: (6, 2),
    }
    assert {band: (t.decided, t.caught) for (_, band), t in found.by_band.items()} == {
        "day": (25, 17),
        "night": (1, 1),
    }
    assert found.drop() is not None
    hour, before, after = found.drop()
    assert (hour, before.decided, before.caught, after.decided, after.caught) == (3, 14, 13, 12, 5)
    report = reports.fatigue(WINDOW)
    assert (
        "Attention drops from hour 3 of a shift: analysts caught 93% of 14 attention checks "
        "before it and 42% of 12 from then on." in report.finding
    )
    assert report.flagged
    table = next(t for t in report.tables if t.title == "Attention checks by hour of shift")
    assert [row[:3] for row in table.rows] == [
        ["hour 1", 8, 8],
        ["hour 2", 6, 5],
        ["hour 3", 6, 3],
        ["hour 4", 6, 2],
    ]


def test_steady_attention_says_so_and_no_drop_is_claimed(triage, analyst) -> None:
    proposal(triage, created_at=BASE, decided_after=timedelta(minutes=1), analyst=analyst)
    for hour in range(4):
        _checks(analyst, BASE + timedelta(hours=hour, minutes=5), "cccccm")

    found = checks.attention(WINDOW)

    assert found.drop() is None
    assert "caught 20 of 24 attention checks (83%), with no drop later in their shifts" in (
        reports.fatigue(WINDOW).finding
    )


def test_fatigue_csv_has_the_catch_rates(client: Client, manager, triage, analyst) -> None:
    proposal(triage, created_at=BASE, decided_after=timedelta(minutes=1), analyst=analyst)
    _checks(analyst, BASE + timedelta(minutes=5), "cccccccccm")
    client.force_login(manager)

    response = client.get("/reports/fatigue.csv", {"since": "2026-11-17", "until": "2026-11-20"})

    rows = list(csv.reader(io.StringIO(response.content.decode())))
    by_analyst = next(
        r for r in rows if r[:3] == ["Attention checks by analyst", analyst.username, "all"]
    )
    assert by_analyst[3:] == ["10", "9", "1", "0.9000"]
    assert any(r[0] == "definition" and r[1] == checks.CHECKS for r in rows)
