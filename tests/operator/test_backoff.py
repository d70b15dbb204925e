"""The retry backoff rule (operator/backoff.py), without a server: delays grow, cap, jitter
stays below the cap and is reproducible, success and a new attempt reset it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from blueprintd.api.membercluster import RetryBackoff
from blueprintd.operator.backoff import BackoffPolicy, after_failure, attempt_key, delay_seconds, due

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFAULT = BackoffPolicy()
NO_JITTER = BackoffPolicy(jitter=0.0)


def test_delays_double_from_the_base_and_stop_at_the_cap() -> None:
    assert [delay_seconds(n, NO_JITTER) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 300, 300, 300]


def test_no_failure_means_no_wait() -> None:
    assert delay_seconds(0, DEFAULT, "alpha") == 0


def test_jitter_only_shortens_by_at_most_its_share_and_never_passes_the_cap() -> None:
    for seed in ("alpha", "beta", "gamma/gpu-platform", ""):
        for n in range(1, 40):
            exact = min(300.0, 5.0 * 2 ** (n - 1))
            assert 0.8 * exact <= delay_seconds(n, DEFAULT, seed) <= exact


def test_jitter_is_reproducible_but_spreads_members_that_failed_together() -> None:
    assert delay_seconds(6, DEFAULT, "alpha") == delay_seconds(6, DEFAULT, "alpha"), "same inputs, same delay"
    spread = {delay_seconds(6, DEFAULT, f"member-{i}") for i in range(50)}
    assert len(spread) > 10, f"50 members failing together retry at {sorted(spread)}"


def test_huge_failure_counts_stay_at_the_cap() -> None:
    assert delay_seconds(10_000, NO_JITTER) == 300


def test_a_delay_is_at_least_one_whole_second() -> None:
    tiny = BackoffPolicy(base_seconds=0.1, cap_seconds=0.1)
    assert delay_seconds(1, tiny, "alpha") == 1


def test_consecutive_failures_of_the_same_attempt_grow_the_wait() -> None:
    state: RetryBackoff | None = None
    now = T0
    waits = []
    for _ in range(8):
        state = after_failure(state, "v1", now, NO_JITTER, "alpha")
        assert state.next_attempt is not None
        waits.append((state.next_attempt - now).total_seconds())
        assert not due(state, "v1", now), "a failed attempt is not retried at once"
        assert not due(state, "v1", state.next_attempt - timedelta(seconds=1))
        now = state.next_attempt
        assert due(state, "v1", now)
    assert state is not None and state.failures == 8
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300]


def test_a_new_attempt_restarts_the_count_and_is_due_at_once() -> None:
    state = None
    for i in range(5):
        state = after_failure(state, "v1", T0 + timedelta(seconds=i), NO_JITTER)
    assert state is not None and state.failures == 5
    assert due(state, "v2", T0), "a new version (or fixed values) is not the same failure: try it now"
    fresh = after_failure(state, "v2", T0 + timedelta(seconds=10), NO_JITTER)
    assert fresh.failures == 1 and fresh.next_attempt == T0 + timedelta(seconds=15)


def test_nothing_recorded_is_due() -> None:
    assert due(None, "v1", T0)
    assert due(RetryBackoff(failures=3, attempt="v1"), "v1", T0), "no nextAttempt: nothing to wait for"


def test_attempt_keys_name_the_inputs() -> None:
    assert attempt_key("1.0.0", {"a": 1, "b": 2}) == attempt_key("1.0.0", {"b": 2, "a": 1})
    assert attempt_key("1.0.0", {"a": 1}) != attempt_key("1.1.0", {"a": 1})
    assert attempt_key("1.0.0", {"a": 1}) != attempt_key("1.0.0", {"a": 2})


@pytest.mark.parametrize(("base", "cap"), [(0, 10), (-1, 10), (20, 10)])
def test_bad_numbers_are_refused_with_the_variables_named(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="BLUEPRINTD_BACKOFF_BASE"):
        BackoffPolicy(base_seconds=base, cap_seconds=cap)
