"""The export pipeline: a bounded queue filled on the hot path, drained by one background worker.

Modelled on OpenTelemetry's BatchSpanProcessor: enqueue is O(1) with a brief lock; the worker wakes
on a full batch or every ``flush_interval``; when the queue is full the oldest span is dropped and
counted; a forked child gets a fresh lock, an empty queue and its own worker.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ._safe import stop_on_exception
from ._span import Span

__all__ = ["Exporter", "BatchProcessor"]


@runtime_checkable
class Exporter(Protocol):
    """What ``init(exporters=[...])`` accepts: anything with these three methods."""

    def export(self, spans: Sequence[dict[str, Any]]) -> bool:
        """Deliver a batch; return False if it could not be delivered (counted as failed)."""
        ...

    def force_flush(self, timeout: float = 5.0) -> bool: ...

    def shutdown(self) -> None: ...


class BatchProcessor:
    def __init__(
        self,
        exporters: Sequence[Exporter],
        *,
        max_queue_size: int = 10_000,
        max_batch_size: int = 512,
        flush_interval: float = 1.0,
        on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        on_start: Callable[[], None] | None = None,
        start: bool = True,
    ) -> None:
        self._exporters = list(exporters)
        self._max_queue_size = max_queue_size
        self._max_batch_size = max_batch_size
        self._flush_interval = flush_interval
        self._on_batch = on_batch
        self._on_start = on_start
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._init_state()
        self._worker = threading.Thread(target=self._run, name="agentwatch-export", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the export worker (once); ``start=False`` lets the owner finish wiring ``on_start`` first."""
        if not self._worker.is_alive() and self._worker.ident is None:
            self._worker.start()
            _LIVE_PROCESSORS.add(self)

    def _init_state(self) -> None:
        self._queue: collections.deque[Span] = collections.deque(maxlen=self._max_queue_size)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flush_requests = 0
        self._flushed = threading.Condition(threading.Lock())
        self._flushes_done = 0
        self._stopping = False
        self._exporting = 0

    def _reinit_after_fork(self) -> None:
        # The parent's worker thread does not exist in the child; the parent's queued spans belong
        # to the parent and will be exported there, so the child starts empty.
        self.sent = self.failed = self.dropped = 0
        self._init_state()
        self._worker = threading.Thread(target=self._run, name="agentwatch-export", daemon=True)
        self._worker.start()

    # ---- hot path ---------------------------------------------------------------------------

    def enqueue(self, span: Span) -> None:
        with self._lock:
            if self._stopping:
                return
            queue = self._queue
            if len(queue) == self._max_queue_size:
                self.dropped += 1
            queue.append(span)
            full = len(queue) == self._max_batch_size
        if full:
            self._wake.set()

    # ---- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        if self._on_start is not None:
            stop_on_exception(self._on_start)()
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            with self._flushed:
                flush_target = self._flush_requests
            stopping = self._stopping
            self._drain()
            with self._flushed:
                self._flushes_done = flush_target
                self._flushed.notify_all()
            if stopping:
                return

    def _take_batch(self) -> list[Span]:
        with self._lock:
            count = min(len(self._queue), self._max_batch_size)
            return [self._queue.popleft() for _ in range(count)]

    def _drain(self) -> None:
        while batch := self._take_batch():
            self._export_batch(batch)

    def _export_batch(self, batch: list[Span]) -> None:
        dicts = [span.to_dict() for span in batch]
        delivered = True
        for exporter in self._exporters:
            ok = stop_on_exception(exporter.export, default=False)(dicts)
            delivered = delivered and bool(ok)
        if self._on_batch is not None:
            stop_on_exception(self._on_batch)(dicts)
        if delivered:
            self.sent += len(dicts)
        else:
            self.failed += len(dicts)

    # ---- control ----------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    def stats(self) -> dict[str, int]:
        return {"queued": self.queued, "sent": self.sent, "dropped": self.dropped, "failed": self.failed}

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export everything queued now; True if that finished within ``timeout`` seconds."""
        if not self._worker.is_alive():
            return False
        deadline = time.monotonic() + timeout
        with self._flushed:
            self._flush_requests += 1
            target = self._flush_requests
        self._wake.set()
        with self._flushed:
            while self._flushes_done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._worker.is_alive():
                    return False
                self._flushed.wait(remaining)
        ok = True
        for exporter in self._exporters:
            remaining = max(deadline - time.monotonic(), 0.0)
            ok = bool(stop_on_exception(exporter.force_flush, default=False)(remaining)) and ok
        return ok

    def shutdown(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        self.force_flush(timeout)
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._worker.is_alive():
            self._worker.join(max(deadline - time.monotonic(), 0.05))
        for exporter in self._exporters:
            stop_on_exception(exporter.shutdown)()
        _LIVE_PROCESSORS.discard(self)


_LIVE_PROCESSORS: weakref.WeakSet[BatchProcessor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for processor in list(_LIVE_PROCESSORS):
        if not processor._stopping:
            processor._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
