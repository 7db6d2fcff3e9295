"""CSV exports never hand a spreadsheet a formula: a cell that would start one is shown as
text, whoever chose it (a username, a target, an agent's name)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from audit.exports import FORMULA_STARTS, CsvWriter, csv_cell
from tests import factories
from tests.audit.history_builder import BASE, proposal

NUMBER = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)
# Text that often starts with a formula character, or whitespace and one, or a number.
RISKY = st.one_of(
    st.text(),
    st.tuples(st.sampled_from(FORMULA_STARTS), st.text()).map("".join),
    st.tuples(st.sampled_from(["-", "+"]), st.floats(allow_nan=False).map(str), st.text()).map(
        "".join
    ),
    st.sampled_from(
        ["=1+1", "+1+cmd@x", "-2+3+cmd|' /C calc'!A0", "@SUM(A1:A9)", "\t=1", "\r=1", "-1.5"]
    ),
)


def _spreadsheet_would_run(cell: str) -> bool:
    """A spreadsheet evaluates a cell that starts with one of these, unless it reads as a
    plain number (which is harmless)."""
    if not cell.startswith(FORMULA_STARTS):
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return cell.strip() != cell  # " 1" parses as a float but is not a plain number cell


@given(RISKY)
def test_no_cell_can_start_a_formula(text: str) -> None:
    shown = csv_cell(text)
    assert not _spreadsheet_would_run(shown)
    # Nothing is lost: the original follows the apostrophe, or is untouched.
    assert shown in (text, "'" + text)


@given(NUMBER)
def test_numbers_stay_numbers(value: object) -> None:
    assert csv_cell(value) == value


@given(st.lists(st.lists(st.one_of(RISKY, NUMBER, st.none()), max_size=6), max_size=6))
def test_what_the_writer_writes_reads_back_without_a_formula(rows: list[list[object]]) -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream)
    for row in rows:
        writer.writerow(row)
    for cell in (cell for row in csv.reader(io.StringIO(stream.getvalue())) for cell in row):
        assert not _spreadsheet_would_run(cell), cell


@pytest.mark.django_db
@pytest.mark.parametrize("report", ["latency", "fatigue", "trust", "whatif"])
def test_a_username_like_a_formula_reaches_every_report_csv_as_text(
    client: Client, manager, report: str
) -> None:
    plotter = factories.user("+1+cmd@x", factories.ANALYST)
    agent = factories.agent("=HYPERLINK(evil)", grants={"isolate_host": 2}).agent
    for index in range(25):
        proposal(
            agent,
            created_at=BASE + timedelta(minutes=5 * index),
            decided_after=timedelta(minutes=1),
            analyst=plotter,
            card=2.0,
            execution="succeeded",
        )
    client.force_login(manager)
    response = client.get(f"/reports/{report}.csv", {"since": "2026-11-17", "until": "2026-11-19"})
    assert response.status_code == 200
    cells = [cell for row in csv.reader(io.StringIO(response.content.decode())) for cell in row]
    assert not [cell for cell in cells if _spreadsheet_would_run(cell)]
    if report == "fatigue":
        assert "'+1+cmd@x" in cells
