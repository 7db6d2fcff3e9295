"""The report charts' category labels: written where they fit, never over one another."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from audit import charts
from audit.reports.base import Chart

_LABEL = re.compile(r'<text x="([0-9.]+)" y="[0-9.]+" text-anchor="middle">([^<]*)</text>')


def _written(chart: Chart) -> list[tuple[float, str]]:
    return [(float(x), label) for x, label in _LABEL.findall(str(charts.render(chart)))]


@given(
    count=st.integers(min_value=1, max_value=400),
    length=st.integers(min_value=1, max_value=24),
)
@example(count=57, length=10)  # seven categories apart fit exactly; were taken as eight
def test_category_labels_never_overlap_and_the_first_is_always_written(
    count: int, length: int
) -> None:
    labels = [f"{n:0{length}d}"[-length:] for n in range(count)]
    written = _written(Chart("lines", "Queue depth", labels, {"most": [1.0] * count}, unit=""))

    assert written[0] == (charts._Plot.of(Chart("lines", "", labels, {})).x(0), labels[0])
    assert 1 <= len(written) <= 12
    room = length * charts.CHAR_PX + charts.LABEL_GAP_PX
    for (left, _), (right, _) in zip(written, written[1:], strict=False):
        assert right - left >= room - 0.1  # centred labels: half of each side by side
    # Every step-th label, and no wider a step than needed: one step less would overlap or
    # write more than a dozen.
    between = 600 / max(1, count - 1)
    step = round((written[1][0] - written[0][0]) / between) if len(written) > 1 else count
    assert [label for _, label in written] == labels[::step]
    narrower = step - 1
    assert narrower == 0 or narrower * between < room or -(-count // narrower) > 12


def test_the_queue_depths_hourly_labels_of_a_day_do_not_collide() -> None:
    # A day by the hour, as the queue-depth chart labels it: 24 labels of 11 characters.
    labels = [f"11-28 {hour:02d}:00" for hour in range(24)]
    written = _written(Chart("lines", "Queue depth", labels, {"most": [3.0] * 24}, unit=""))
    assert [label for _, label in written] == labels[::4]


_TICK = re.compile(r'<text x="[0-9.]+" y="[0-9.]+" text-anchor="end">([^<]*)</text>')


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=48))
@example([113])  # reported: a queue-depth axis read 0, 56.5, 113
def test_a_count_axis_is_labelled_in_whole_numbers_and_holds_every_value(
    depths: list[int],
) -> None:
    chart = Chart("lines", "Queue depth", [str(n) for n in range(len(depths))], {}, unit="")
    chart.series["most"] = [float(d) for d in depths]
    ticks = _TICK.findall(str(charts.render(chart)))
    assert len(ticks) == 3
    assert all(re.fullmatch(r"\d+", tick) for tick in ticks), ticks
    assert int(ticks[-1]) >= max(depths)
