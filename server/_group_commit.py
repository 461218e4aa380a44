"""Group commit: the batches of callers that wait for one another stored by one set of statements.

ClickHouse writes a part per insert and per materialized view, and every statement has a fixed cost (1.5–5 ms in
chdb whatever its size), so a collector that stores each small request by itself spends most of its time on that
overhead; ClickHouse's own advice is to insert in large blocks. A caller that arrives while a commit runs queues its
batch and waits; when the commit ends, one waiting caller whose batch was not in it leads the next commit, of every
batch queued by then, and each caller gets its own result. No thread of its own: a lone caller commits at once;
groups form only when requests overlap, which is when the overhead matters. Once they do, a leader waits a few
milliseconds (``linger``) for as many callers as the last cycle saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Slot(Generic[ItemT, ResultT]):
    __slots__ = ("item", "size", "result", "error", "done")

    def __init__(self, item: ItemT, size: int) -> None:
        self.item = item
        self.size = size
        self.result: ResultT | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[ItemT, ResultT]):
    """Runs ``commit(items) -> results`` (one result per item, in order) for the items of concurrent ``submit`` calls.

    A group holds at most ``max_size`` by ``size(item)`` (its first item whatever its size), so one statement stays
    bounded. When a group of several fails, each of its items is committed by itself: a bad batch fails alone and
    the others are stored as they would have been without grouping."""

    def __init__(self, commit: Callable[[list[ItemT]], Sequence[ResultT]], size: Callable[[ItemT], int],
                 max_size: int, linger: float = 0.005) -> None:
        self._commit = commit
        self._size = size
        self._max_size = max_size
        self._linger = linger
        self._callers = 1  # callers seen in the last cycle: its group and those that queued meanwhile
        self._changed = threading.Condition(threading.Lock())
        self._queue: list[_Slot[ItemT, ResultT]] = []
        self._committing = False

    def submit(self, item: ItemT) -> ResultT:
        slot: _Slot[ItemT, ResultT] = _Slot(item, self._size(item))
        with self._changed:
            self._queue.append(slot)
            self._changed.notify_all()  # a leader may be lingering for this one
            # Waiting on the condition, not on a lock held through the commit: a caller whose batch a group took
            # returns as soon as that group is stored, not after the group the leader went on to commit next.
            while self._committing and not slot.done:
                self._changed.wait()
            if not slot.done:
                self._committing = True
        if not slot.done:
            try:
                while not slot.done:  # a group full before this slot leaves it for the next one
                    group = self._take()
                    self._run(group)
                    with self._changed:
                        self._callers = len(group) + len(self._queue)
                        self._changed.notify_all()
            finally:
                with self._changed:
                    self._committing = False
                    self._changed.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]  # set whenever done without an error

    def _take(self) -> list[_Slot[ItemT, ResultT]]:
        """The next group: queued slots in arrival order while they fit (the first always). When the last cycle
        saw several callers (its group, and those that queued while it was stored), waits up to ``linger`` for as
        many: callers come back one by one after their group is stored, and two clients that send one request at
        a time would otherwise alternate, each stored alone."""
        with self._changed:
            deadline = time.monotonic() + self._linger
            while len(self._queue) < self._callers:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            taken, total = 0, 0
            for slot in self._queue:
                if taken and total + slot.size > self._max_size:
                    break
                taken += 1
                total += slot.size
            group, self._queue[:taken] = self._queue[:taken], []
        return group

    def _run(self, group: list[_Slot[ItemT, ResultT]]) -> None:
        try:
            results = self._commit([slot.item for slot in group])
        except Exception as error:
            if len(group) == 1:
                self._fail(group, error)
            else:
                for slot in group:
                    self._run([slot])
            return
        except BaseException as error:  # the leader's own interruption: every caller of the group hears of it
            self._fail(group, error)
            raise
        for slot, result in zip(group, results, strict=True):
            slot.result, slot.done = result, True

    @staticmethod
    def _fail(group: list[_Slot[ItemT, ResultT]], error: BaseException) -> None:
        for slot in group:
            slot.error, slot.done = error, True
