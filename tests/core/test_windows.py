"""Rolling windows: eviction over (fake) time, exact running sums, limits at their boundaries."""

from __future__ import annotations

import math
import random
import threading

import pytest

from agentwatch._windows import (
    BUCKETS_PER_WINDOW,
    ERROR_RATE_MIN_CALLS,
    LocalWindowStore,
    WindowStore,
    units_to_usd,
    usd_to_units,
)


def _check(store: LocalWindowStore, now: float, *, budget: float | None = None, rate: float | None = None,
           calls: int | None = None, count: bool = False) -> tuple[str, float, float] | None:
    store.set_limits(budget, rate, calls)
    return store.evaluate(now, count)


def test_local_store_satisfies_the_protocol() -> None:
    assert isinstance(LocalWindowStore(), WindowStore)


def test_spend_window_is_one_hour() -> None:
    store = LocalWindowStore()
    store.record(0.0, 1.5, False)
    store.record(10.0, 0.25, False)
    assert store.spend(0.0) == 1.75
    assert store.spend(3599.999) == 1.75
    assert store.spend(3600.0) == 0.25  # the entry made at t=0 leaves exactly one hour later
    assert store.spend(3610.0) == 0.0


def test_error_window_is_five_minutes() -> None:
    store = LocalWindowStore()
    store.record(0.0, 0.0, True)
    store.record(100.0, 0.0, False)
    assert store.outcomes(299.0) == (2, 1)
    assert store.outcomes(300.0) == (1, 0)
    assert store.outcomes(400.0) == (0, 0)


def test_calls_window_is_one_minute_and_counts_admissions() -> None:
    store = LocalWindowStore()
    for t in (0.0, 1.0, 2.0):
        assert _check(store, t, count=True) is None
    assert store.calls(59.0) == 3
    assert store.calls(60.0) == 2
    assert store.calls(62.0) == 0


def test_call_rate_boundary_n_passes_n_plus_one_violates() -> None:
    store = LocalWindowStore()
    for _ in range(5):
        assert _check(store, 0.0, calls=5, count=True) is None
    assert _check(store, 0.0, calls=5, count=True) == ("max_calls_per_minute", 5, 6)
    assert store.calls(0.0) == 5  # the violating call was not counted
    # As a plain check (nothing incoming), 5 recorded calls are within a limit of 5.
    assert _check(store, 0.0, calls=5, count=False) is None
    assert _check(store, 60.0, calls=5, count=True) is None  # the minute has passed


def test_uncount_call_undoes_the_latest_admission() -> None:
    store = LocalWindowStore()
    _check(store, 0.0, count=True)
    _check(store, 30.0, count=True)
    store.uncount_call(30.0)
    assert store.calls(30.0) == 1
    store.uncount_call(30.0)
    store.uncount_call(30.0)  # nothing left: no negative counts
    assert store.calls(30.0) == 0


def test_budget_is_violated_once_reached_exactly() -> None:
    store = LocalWindowStore()
    store.record(0.0, 0.5, False)
    assert _check(store, 0.0, budget=1.0) is None
    store.record(0.0, 0.5, False)
    assert _check(store, 0.0, budget=1.0) == ("budget_per_hour", 1.0, 1.0)


def test_budget_comparison_is_decimal_exact() -> None:
    # 0.1 + 0.2 != 0.3 in floats; spend is kept in integer units, so the budget is reached as expected.
    store = LocalWindowStore()
    store.record(0.0, 0.1, False)
    store.record(0.0, 0.2, False)
    assert _check(store, 0.0, budget=0.3) == ("budget_per_hour", 0.3, 0.3)
    assert _check(store, 0.0, budget=0.30000001) is None


def test_error_rate_needs_ten_completed_calls() -> None:
    store = LocalWindowStore()
    for _ in range(ERROR_RATE_MIN_CALLS - 1):
        store.record(0.0, 0.0, True)
    assert _check(store, 0.0, rate=0.0) is None  # 9 calls, all failed: not judged yet
    store.record(0.0, 0.0, True)
    assert _check(store, 0.0, rate=0.5) == ("max_error_rate", 0.5, 1.0)


def test_error_rate_must_exceed_the_maximum() -> None:
    store = LocalWindowStore()
    for index in range(10):
        store.record(0.0, 0.0, index < 5)
    assert _check(store, 0.0, rate=0.5) is None  # exactly 50 %: at the maximum, not over it
    store.record(0.0, 0.0, True)
    assert _check(store, 0.0, rate=0.5) == ("max_error_rate", 0.5, 6 / 11)


def test_limits_are_checked_in_order_budget_error_rate_calls() -> None:
    store = LocalWindowStore()
    for _ in range(10):
        store.record(0.0, 1.0, True)
        _check(store, 0.0, count=True)
    assert _check(store, 0.0, budget=1.0, rate=0.1, calls=1)[0] == "budget_per_hour"  # type: ignore[index]
    assert _check(store, 0.0, rate=0.1, calls=1)[0] == "max_error_rate"  # type: ignore[index]
    assert _check(store, 0.0, calls=1, count=True)[0] == "max_calls_per_minute"  # type: ignore[index]


def test_binary_exact_costs_sum_exactly_through_eviction() -> None:
    rng = random.Random(7)
    store = LocalWindowStore()
    costs = [(float(t), 2.0 ** -rng.randint(0, 12) * rng.randint(1, 9)) for t in range(0, 7200, 3)]
    for t, cost in costs:
        store.record(t, cost, False)
    now = 7200.0
    expected = sum(cost for t, cost in costs if now - t < 3600)
    assert store.spend(now) == expected  # exact, not approximately: no drift from add/subtract


def test_decimal_costs_match_fsum() -> None:
    rng = random.Random(3)
    store = LocalWindowStore()
    costs = [round(rng.uniform(0, 0.05), 6) for _ in range(5000)]
    for cost in costs:
        store.record(1.0, cost, False)
    assert math.isclose(store.spend(1.0), math.fsum(costs), rel_tol=0, abs_tol=1e-12)


def test_units_round_trip() -> None:
    assert usd_to_units(0.000123) == 123_000_000
    assert units_to_usd(usd_to_units(2.0 ** -12)) == 2.0 ** -12


def test_memory_is_bounded_by_buckets_not_calls() -> None:
    store = LocalWindowStore()
    t = 0.0
    for _ in range(20_000):  # 20,000 calls within 20 seconds
        t += 0.001
        store.record(t, 0.001, False)
        _check(store, t, budget=1e9, rate=1.0, calls=10**9, count=True)
    spend_buckets, outcome_buckets, call_buckets = store.bucket_counts()
    assert spend_buckets <= 21 and outcome_buckets <= 20 / (300 / BUCKETS_PER_WINDOW) + 1
    assert call_buckets <= 20 / (60 / BUCKETS_PER_WINDOW) + 1
    assert store.calls(t) == 20_000 and store.outcomes(t) == (20_000, 0)
    # Two hours of one call per second: the spend window keeps at most an hour of buckets.
    for _ in range(7200):
        t += 1.0
        store.record(t, 0.001, False)
    assert store.bucket_counts()[0] <= BUCKETS_PER_WINDOW + 1


def test_clear_forgets_everything() -> None:
    store = LocalWindowStore()
    store.record(0.0, 2.0, True)
    _check(store, 0.0, count=True)
    store.clear()
    assert (store.spend(0.0), store.calls(0.0), store.outcomes(0.0)) == (0.0, 0, (0, 0))


def test_record_from_many_threads_while_reading_under_a_lock() -> None:
    # record() is lock-free by contract; reads happen under the owner's lock (here: one lock).
    store = LocalWindowStore()
    store.set_limits(1e9, 1.0, None)
    lock = threading.Lock()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with lock:
                store.evaluate(0.0, False)

    def writer() -> None:
        for _ in range(2000):
            store.record(0.0, 0.125, False)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    read = threading.Thread(target=reader)
    read.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    read.join()
    with lock:
        assert store.spend(0.0) == 8 * 2000 * 0.125
        assert store.outcomes(0.0) == (16_000, 0)


@pytest.mark.parametrize("cost", [0.0, 1e-13])
def test_zero_and_tiny_costs_count_as_calls_but_not_spend(cost: float) -> None:
    store = LocalWindowStore()
    store.record(0.0, cost, False)
    assert store.spend(0.0) == 0.0
    assert store.outcomes(0.0) == (1, 0)


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_matches_a_naive_reference_over_random_operations(seed: int, lazy: bool) -> None:
    # Whole-second timestamps: every entry of a bucket then shares its start, so bucketing changes
    # nothing and the store must agree exactly with a list of all entries. ``lazy``: admissions are left in
    # ``pending_calls`` as a monitor with no limit leaves them (counted at the next read, across buckets).
    rng = random.Random(seed)
    store = LocalWindowStore()
    spend: list[tuple[float, float]] = []
    done: list[tuple[float, bool]] = []
    calls: list[float] = []
    now = 0.0
    steps = [0, 0, 0, 1, 2, 59, 60, 61, 299, 300, 301, 3599, 3600]
    for _ in range(3000):
        op = rng.random()
        if op < 0.35:
            cost, error = rng.randint(0, 9) * 2.0 ** -rng.randint(0, 12), rng.random() < 0.3
            store.record(now, cost, error)
            spend.append((now, cost))
            done.append((now, error))
        elif op < 0.6:
            if lazy:
                store.pending_calls.append(now)
            else:
                assert _check(store, now, count=True) is None
            calls.append(now)
        elif op < 0.65 and calls:
            store.uncount_call(now)
            calls.pop()  # the newest entry; expired ones do not matter any more
        elif op < 0.67:
            store.clear()
            spend, done, calls = [], [], []
        else:
            now += rng.choice(steps)
        if rng.random() < 0.3:
            assert store.spend(now) == sum(c for t, c in spend if now - t < 3600)
            live = [e for t, e in done if now - t < 300]
            assert store.outcomes(now) == (len(live), sum(live))
            assert store.calls(now) == sum(1 for t in calls if now - t < 60)
        if rng.random() < 0.05:  # drop expired entries so uncount's "newest" stays meaningful
            calls = [t for t in calls if now - t < 60]


def test_entries_leave_one_by_one_while_nothing_new_arrives() -> None:
    store = LocalWindowStore()
    for t in (0.0, 100.0, 200.0, 250.0):
        store.record(t, 1.0, t < 150)
    calls = LocalWindowStore()
    for t in (0.0, 10.0, 20.0, 30.0):
        _check(calls, t, count=True)
    # each read must notice the next-oldest bucket expiring, with no new entry in between
    assert [store.outcomes(t) for t in (299.0, 300.0, 399.0, 400.0, 500.0, 550.0)] == [
        (4, 2), (3, 1), (3, 1), (2, 0), (1, 0), (0, 0)]
    assert [calls.calls(t) for t in (59.0, 60.0, 70.0, 80.0, 90.0)] == [4, 3, 2, 1, 0]
    assert [store.spend(t) for t in (3600.0, 3700.0, 3800.0, 3850.0)] == [3.0, 2.0, 1.0, 0.0]
