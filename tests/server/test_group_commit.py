"""Group commit: callers that overlap are committed together, each gets its own result, a bad batch fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from agentwatch.server._group_commit import GroupCommit


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Recorder:
    """A commit function that records its groups; the first group waits until ``release`` is set."""

    def __init__(self, bad: frozenset[int] = frozenset()) -> None:
        self.groups: list[list[int]] = []
        self.release = threading.Event()
        self.bad = bad

    def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            assert self.release.wait(10)
        if self.bad & set(items):
            raise ValueError(f"bad item among {items}")
        return [item * 10 for item in items]


def _submit_all(grouped: GroupCommit[int, int], recorder: Recorder, items: list[int],
                ) -> tuple[dict[int, int], dict[int, BaseException]]:
    """Submits the first item, then the others while the first one's commit is held, then lets it go."""
    results: dict[int, int] = {}
    errors: dict[int, BaseException] = {}

    def submit(item: int) -> None:
        try:
            results[item] = grouped.submit(item)
        except Exception as error:
            errors[item] = error

    first = threading.Thread(target=submit, args=(items[0],))
    first.start()
    _wait_for(lambda: len(recorder.groups) == 1)
    others = [threading.Thread(target=submit, args=(item,)) for item in items[1:]]
    for thread in others:
        thread.start()
    _wait_for(lambda: len(grouped._queue) == len(items) - 1)
    recorder.release.set()
    for thread in (first, *others):
        thread.join(10)
        assert not thread.is_alive()
    return results, errors


def test_callers_that_wait_for_a_commit_are_committed_together_each_with_its_own_result() -> None:
    recorder = Recorder()
    grouped: GroupCommit[int, int] = GroupCommit(recorder, size=lambda item: 1, max_size=100)
    results, errors = _submit_all(grouped, recorder, list(range(1, 7)))
    assert not errors
    assert results == {item: item * 10 for item in range(1, 7)}
    assert recorder.groups[0] == [1]
    assert sorted(recorder.groups[1]) == [2, 3, 4, 5, 6] and len(recorder.groups) == 2


def test_a_lone_caller_is_committed_at_once_by_itself() -> None:
    recorder = Recorder()
    recorder.release.set()
    grouped: GroupCommit[int, int] = GroupCommit(recorder, size=lambda item: 1, max_size=100)
    assert [grouped.submit(item) for item in (1, 2, 3)] == [10, 20, 30]
    assert recorder.groups == [[1], [2], [3]]


def test_a_group_holds_at_most_max_size_and_every_caller_is_served() -> None:
    recorder = Recorder()
    grouped: GroupCommit[int, int] = GroupCommit(recorder, size=lambda item: item, max_size=10)
    items = [1, 4, 4, 4, 4, 30]
    results, errors = _submit_all(grouped, recorder, items)
    assert not errors and results == {item: item * 10 for item in set(items)}
    for group in recorder.groups[1:]:
        assert sum(group) <= 10 or len(group) == 1  # the first of a group whatever its size
    assert sorted(item for group in recorder.groups for item in group) == sorted(items)


def test_a_bad_batch_in_a_group_fails_alone_and_the_others_are_committed() -> None:
    recorder = Recorder(bad=frozenset({4}))
    grouped: GroupCommit[int, int] = GroupCommit(recorder, size=lambda item: 1, max_size=100)
    results, errors = _submit_all(grouped, recorder, [1, 2, 3, 4, 5])
    assert results == {1: 10, 2: 20, 3: 30, 5: 50}
    assert list(errors) == [4] and isinstance(errors[4], ValueError)
    assert [4] in recorder.groups  # retried by itself after the group failed


def test_an_interrupted_leader_hands_the_interruption_to_its_group() -> None:
    def commit(items: list[int]) -> list[int]:
        raise KeyboardInterrupt

    grouped: GroupCommit[int, int] = GroupCommit(commit, size=lambda item: 1, max_size=100)
    with pytest.raises(KeyboardInterrupt):
        grouped.submit(1)
    # the next caller is not left waiting for a leader that is gone
    done = threading.Event()

    def second() -> None:
        try:
            grouped.submit(2)
        except KeyboardInterrupt:
            done.set()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(10)
    assert done.is_set()
