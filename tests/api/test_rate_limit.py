"""The per-key rate limit is a sliding minute: no 60-second span holds more admitted calls than
the limit, a call is refused only when the limit's worth was admitted in the minute before it,
and Retry-After says when the next would be admitted. Redis's count (a Lua script) and the
count each process keeps while Redis is down decide alike, call by call."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import throttling

START = 1_800_000_000.0  # a fixed clock, far from any real key's calls


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(
        st.one_of(
            st.floats(0, 3, allow_nan=False),
            st.floats(0, 70, allow_nan=False),
            st.just(60.0),
        ),
        min_size=1,
        max_size=40,
    ),
    limit=st.integers(1, 6),
)
def test_no_minute_holds_more_than_the_limit_and_nothing_more_is_refused(
    gaps: list[float], limit: int
) -> None:
    times = list(itertools.accumulate(gaps, initial=START))[1:]
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    local = throttling._LocalCounter()
    admitted: list[float] = []
    for now in times:
        in_redis = throttling.ApiKeyRateThrottle._wait_for(key, now, limit)
        in_process = local.wait(key, now, limit)
        assert (in_redis <= 0) == (in_process <= 0), (now, in_redis, in_process)
        window = [t for t in admitted if now - throttling.WINDOW_SECONDS < t <= now]
        if in_redis <= 0:
            # Admitted: the minute that ends with it holds at most the limit.
            assert len(window) + 1 <= limit
            admitted.append(now)
        else:
            # Refused only when the limit's worth was admitted in the minute before it, and
            # told to wait exactly until the oldest of them leaves that minute.
            assert len(window) == limit
            expected = window[0] + throttling.WINDOW_SECONDS - now
            assert in_redis == pytest.approx(expected, abs=1e-4)
            assert in_process == pytest.approx(expected, abs=1e-6)


def test_the_turn_of_a_minute_lets_no_second_burst_through() -> None:
    """A count per calendar minute admitted the limit at 0:59 and the limit again at 1:00."""
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    minute = START - START % 60
    late = [throttling.ApiKeyRateThrottle._wait_for(key, minute + 59.9, 3) for _ in range(3)]
    early = [throttling.ApiKeyRateThrottle._wait_for(key, minute + 60.1, 3) for _ in range(3)]
    assert late == [0.0, 0.0, 0.0]
    assert all(wait == pytest.approx(59.8) for wait in early)
