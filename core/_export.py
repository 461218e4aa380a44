"""The export pipeline: a bounded queue filled on the hot path, drained by one background worker.

Modelled on OpenTelemetry's BatchSpanProcessor: enqueue is O(1) with a brief lock; the worker wakes
on a full batch or every ``flush_interval``; when the queue is full (in spans, or in estimated bytes) the
oldest spans are dropped and counted; a forked child gets a fresh lock, an empty queue and its own worker.

Exporters may also have ``begin_shutdown()`` (called before the exit flush, so that a receiver known to be
down is not waited for) and ``on_idle()`` (called by the worker after each drain, for background work such
as delivering spooled batches).
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

__all__ = ["Exporter", "BatchProcessor", "estimate_size", "DEFAULT_MAX_QUEUE_BYTES"]

DEFAULT_MAX_QUEUE_BYTES = 32 * 1024 * 1024
#: Fixed part of a span's estimate: ids, times, counters and the slots object itself.
_SPAN_OVERHEAD = 512
_SAMPLE = 8
_MAX_DEPTH = 3


def _estimate(value: Any, depth: int) -> int:
    """Rough serialised size without serialising: exact for strings, sampled for big containers. Type checks
    by identity first (the hot path's common case: a dict of short strings and numbers)."""
    kind = type(value)
    if kind is str:
        return len(value)
    if kind is dict:
        return _container(value, True, depth)
    if kind is list or kind is tuple:
        return _container(value, False, depth)
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (bytes, bytearray)):
        return len(value) * 2  # sent as a str() of the bytes
    if isinstance(value, dict):
        return _container(value, True, depth)
    if isinstance(value, (list, tuple)):
        return _container(value, False, depth)
    return 8


def _container(value: Any, is_dict: bool, depth: int) -> int:
    count = len(value)
    if count == 0:
        return 2
    if depth >= _MAX_DEPTH:
        return 16 * count
    total = 0
    index = 0
    if is_dict:
        for key, item in value.items():
            if index == _SAMPLE:
                break
            index += 1
            total += (len(key) if type(key) is str else 8) + 4
            item_kind = type(item)
            if item_kind is str:
                total += len(item)
            elif item_kind is int or item_kind is float or item is None or item_kind is bool:
                total += 8
            else:
                total += _estimate(item, depth + 1)
    else:
        for item in value:
            if index == _SAMPLE:
                break
            index += 1
            total += (len(item) if type(item) is str else _estimate(item, depth + 1)) + 1
    # Containers longer than the sample are extrapolated from it (an O(1) bound per level).
    return total if count <= _SAMPLE else total * count // _SAMPLE


def estimate_size(span: Span) -> int:
    """What ``span`` will weigh in the queue, in bytes, cheaply enough for the hot path."""
    size = _SPAN_OVERHEAD + len(span.name)
    if span.attributes:
        size += _estimate(span.attributes, 0)
    if span.input is not None:
        size += _estimate(span.input, 0)
    if span.output is not None:
        size += _estimate(span.output, 0)
    return size


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
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_batch_size: int = 512,
        flush_interval: float = 1.0,
        on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        on_start: Callable[[], None] | None = None,
        start: bool = True,
    ) -> None:
        self._exporters = list(exporters)
        self._max_queue_size = max_queue_size
        self._max_queue_bytes = max_queue_bytes
        hooks = (getattr(exporter, "on_idle", None) for exporter in self._exporters)
        self._idle_hooks: list[Callable[[], Any]] = [hook for hook in hooks if callable(hook)]
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
        # (estimated bytes, span): the bytes travel with the span so that dropping or taking it is exact.
        self._queue: collections.deque[tuple[int, Span]] = collections.deque()
        self._queued_bytes = 0
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
        size = estimate_size(span)  # outside the lock
        with self._lock:
            if self._stopping:
                return
            if size > self._max_queue_bytes:  # could never be queued: dropping others would not help
                self.dropped += 1
                return
            queue = self._queue
            if len(queue) == self._max_queue_size:
                self._queued_bytes -= queue.popleft()[0]
                self.dropped += 1
            self._queued_bytes += size
            # Over the byte bound: the oldest go first, as for the span bound.
            while self._queued_bytes > self._max_queue_bytes:
                self._queued_bytes -= queue.popleft()[0]
                self.dropped += 1
            queue.append((size, span))
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
                flushing = flush_target != self._flushes_done
            stopping = self._stopping
            self._drain(everything=flushing or stopping)
            if not stopping:
                for hook in self._idle_hooks:
                    stop_on_exception(hook)()
            with self._flushed:
                self._flushes_done = flush_target
                self._flushed.notify_all()
            if stopping:
                return

    def _take_batch(self) -> list[Span]:
        with self._lock:
            queue = self._queue
            count = min(len(queue), self._max_batch_size)
            batch = []
            for _ in range(count):
                size, span = queue.popleft()
                self._queued_bytes -= size
                batch.append(span)
            return batch

    def _drain(self, everything: bool) -> None:
        """One batch of what is queued (the interval is up, or a batch is full), then only full batches, unless
        a flush or the exit wants everything. Chasing the queue until it is empty would post a handful of
        spans per request while the program runs (spans arrive during each request), costing the worker, and
        the program's thread the GIL, a request and its serialisation per few spans."""
        first = True
        while first or everything or len(self._queue) >= self._max_batch_size:
            batch = self._take_batch()
            if not batch:
                return
            self._export_batch(batch)
            first = False

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

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def stats(self) -> dict[str, int]:
        # "failed" counts spans not delivered; of those, "spooled" were kept on disk for a later run.
        spooled = sum(int(getattr(exporter, "spooled", 0)) for exporter in self._exporters)
        return {"queued": self.queued, "queued_bytes": self._queued_bytes, "sent": self.sent,
                "dropped": self.dropped, "failed": self.failed, "spooled": spooled}

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
        for exporter in self._exporters:
            begin = getattr(exporter, "begin_shutdown", None)
            if callable(begin):
                stop_on_exception(begin)()
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
