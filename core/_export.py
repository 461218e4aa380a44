"""The export pipeline: a bounded queue filled on the hot path, drained by one background worker.

Modelled on OpenTelemetry's BatchSpanProcessor: enqueue is O(1) (a plain span: one lock-free append); the
worker wakes on a full batch or every ``flush_interval`` and builds the export records (``Span.to_dict``)
there, off the program's thread (the queue holds each ended span's fields, ``span_fields``); when the queue is full
(in spans, or in estimated bytes) the oldest spans are dropped and counted; a forked child gets a fresh lock, an empty
queue and its own worker. Unlike OpenTelemetry's, it does not let a program starve the worker of the GIL: a thread
that enqueues while the queue is half full and the worker, trying to run, has not moved for 20 ms stands aside for 2 ms
(``_STAND_ASIDE_SECONDS``).

Exporters may also have ``prepare()`` (called once by the worker when it first wakes, before any export, while
forks wait for it: the place for imports an exporter defers, which a fork must not catch half done),
``begin_shutdown()`` (called before the exit flush, so that a receiver known to be
down is not waited for), ``begin_flush()`` (called by the worker before it drains for ``force_flush``, so that
a receiver known to be down is tried once more and what it missed delivered) and ``on_idle()`` (called by the
worker after each drain, for background work such as delivering spooled batches; the core's own such work is
registered in ``_idle``). The client reads one more,
``remote_parent()``, on the program's thread: see ``Client._open_span``. A lone exporter may have
``export_entries(entries)``: offered each batch as the queue's entries before any record is made, it takes it (True
or False, as ``export`` answers) or declines it (None), when nothing else reads the records (``reads_batches``): the
HTTP exporter sends them as rows to a collector that takes them, and spools them as rows while its collector is known
down (``HttpExporter.export_entries``).
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from ._deferred import pending as deferred_work
from ._deferred import run_deferred
from ._forking import after_fork_in_child, importing
from ._idle import idle_tasks
from ._safe import guard_exporter, stop_on_exception, swallow_internal_error
from ._span import Span, SpanFields, span_fields, wire_records

__all__ = ["Exporter", "BatchProcessor", "estimate_size", "DEFAULT_MAX_QUEUE_BYTES", "PLAIN_SPAN_BYTES",
           "PLAIN_MAX_ATTRIBUTES"]

DEFAULT_MAX_QUEUE_BYTES = 32 * 1024 * 1024
#: What a plain span (no input or output text, at most ``PLAIN_MAX_ATTRIBUTES`` attributes) counts for against
#: the byte bound, instead of being sized on the program's thread (~0.5 µs a span). Such a span serialises to
#: ~450 bytes (an LLM call's: ids, times, counts, a few attributes of numbers and names; plugins clip any text
#: they put there), and the per-span estimate gave 520-600: the default bound holds as many as before.
PLAIN_SPAN_BYTES = 512
PLAIN_MAX_ATTRIBUTES = 16
#: Fixed part of a span's estimate: ids, times, counters and the slots object itself.
_SPAN_OVERHEAD = 512
_SAMPLE = 8
_MAX_DEPTH = 3
#: A program thread that releases the GIL often and only briefly (the openai client answered in process draws
#: ``os.urandom`` per request, in a plain loop or under asyncio) can keep the export worker from ever taking the GIL
#: back: each release wakes the waiting worker too late, and counts as a switch, so the worker never claims one
#: (CPython's GIL convoy). The queue then fills and drops spans while the worker starves. So when the queue is half
#: full (spans would soon be dropped) and the worker has not moved for ``_STARVED_SECONDS`` (a worker that only
#: competes for the GIL gets it within the switch interval, 5 ms) while outside its exporters and hooks, or inside
#: them but using CPU since the last look (it tries to run; one that sleeps or waits on a socket there uses none, and
#: a pause would not help it), the enqueuing thread stands aside for ``_STAND_ASIDE_SECONDS`` (a sleep, holding no
#: lock), in which the worker runs uncontended. A pause in which the worker did not move doubles the step to the next
#: look (up to a quarter of the queue).
_STARVED_SECONDS = 0.02
_STAND_ASIDE_SECONDS = 0.002
_FIRST_STEP = 64


def _own_cpu_clock() -> int | None:
    """The calling thread's CPU-time clock (POSIX), to tell a worker kept from the GIL (it wakes, tries, and uses a
    little CPU each time) from one that sleeps or waits on a socket (none); None where there is no such clock."""
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):
        return None


def _thread_cpu(clock: int | None) -> int | None:
    if clock is None:
        return None
    try:
        return time.clock_gettime_ns(clock)
    except OSError:  # the thread is gone (a fork, a stopped worker): no reading
        return None


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
    """The queue between the program's threads and the export worker.

    ``enqueue`` runs once per span on the program's thread, so a plain span (no captured text, a handful of
    attributes: every LLM call unless ``capture_messages`` is on) is one ``deque.append``, with no lock, no
    wake-up and no sizing: it counts ``PLAIN_SPAN_BYTES`` against the byte bound. Only a span with text, a
    full queue or a stopping processor take the locked path (``_enqueue_sized``), where spans are sized and
    the oldest dropped. Queue entries are spans' fields (``span_fields``: see there why not the spans), or
    ``[bytes, fields]`` lists for sized spans, so that taking or dropping one gives its bytes back exactly.
    """

    def __init__(
        self,
        exporters: Sequence[Exporter],
        *,
        max_queue_size: int = 10_000,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_batch_size: int = 512,
        flush_interval: float = 1.0,
        on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        reads_batches: Callable[[], bool] | None = None,
        on_start: Callable[[], None] | None = None,
        start: bool = True,
    ) -> None:
        self._exporters = list(exporters)
        # A lone exporter that may take a batch as the queue's entries (``HttpExporter.export_entries``), offered them
        # before any record is made, unless ``on_batch`` reads the records (``reads_batches()``: the plugins' export
        # hook; without that callable, whenever there is an ``on_batch``).
        taker = getattr(self._exporters[0], "export_entries", None) if len(self._exporters) == 1 else None
        self._export_entries: Callable[[list[SpanFields]], bool | None] | None = \
            stop_on_exception(taker) if callable(taker) else None
        self._reads_batches = reads_batches
        self._max_queue_size = max_queue_size
        self._max_queue_bytes = max_queue_bytes
        self._idle_hooks = self._exporter_hooks("on_idle")
        self._prepare_hooks = self._exporter_hooks("prepare")
        self._flush_hooks = self._exporter_hooks("begin_flush")
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

    def _exporter_hooks(self, name: str) -> list[Callable[[], Any]]:
        """The exporters' optional ``name()`` methods (see the module's docstring)."""
        hooks = (getattr(exporter, name, None) for exporter in self._exporters)
        return [hook for hook in hooks if callable(hook)]

    def start(self) -> None:
        """Start the export worker (once); ``start=False`` lets the owner finish wiring ``on_start`` first."""
        if not self._worker.is_alive() and self._worker.ident is None:
            self._worker.start()
            _LIVE_PROCESSORS.add(self)

    def _init_state(self) -> None:
        self._queue: collections.deque[SpanFields | list[Any]] = collections.deque()
        # The sized entries in the queue: how many, and their bytes (plain spans count PLAIN_SPAN_BYTES each).
        self._sized = 0
        self._sized_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flush_requests = 0
        self._flushed = threading.Condition(threading.Lock())
        self._flushes_done = 0
        self._stopping = False
        self._room = self._room_locked()
        # The queue length at which enqueue next wakes the worker and looks whether it keeps up (_backlogged).
        self._check_at = self._max_batch_size
        self._check_drops = 0
        self._step = _FIRST_STEP
        # Moved on by the worker at each step of its loop (read without a lock: a hint), and when it was last
        # seen to move.
        self._worker_turns = 0
        self._turns_seen = 0
        self._moved_at = time.monotonic()
        self._worker_clock: int | None = None  # the worker thread's CPU clock, where the platform has one
        self._worker_cpu_seen: int | None = None
        self._worker_in_io = False  # in an exporter or a hook: it may wait on a socket or a backoff there
        # The batch the worker is exporting, for ``_abandon``; and whether the shutdown deadline passed without it.
        self._current: list[dict[str, Any]] | None = None
        self._abandoned = False

    def _reinit_after_fork(self) -> None:
        # The parent's worker thread does not exist in the child; the parent's queued spans belong
        # to the parent and will be exported there, so the child starts empty.
        self.sent = self.failed = self.dropped = 0
        self._init_state()
        self._worker = threading.Thread(target=self._run, name="agentwatch-export", daemon=True)
        self._worker.start()

    # ---- hot path ---------------------------------------------------------------------------

    def enqueue(self, span: Span) -> None:
        queue = self._queue
        # A plain span while there is room for it: the whole cost on the program's thread. Another thread's
        # append between the test and this one can overshoot the bound by a span; the next locked enqueue
        # trims it. The worker wakes by its clock (``flush_interval``), or when a batch is full.
        if (len(queue) < self._room and span.input is None and span.output is None
                and len(span.attributes) <= PLAIN_MAX_ATTRIBUTES):
            queue.append(span_fields(span))
            if len(queue) >= self._check_at:
                self._backlogged()
            return
        self._enqueue_sized(span)

    def _backlogged(self) -> None:
        """The queue reached ``_check_at`` (or, full, dropped ``_check_drops`` spans): wake the worker; if the queue
        is half full and the worker has not moved for ``_STARVED_SECONDS``, stand aside for it (see that constant)."""
        self._wake.set()
        queued = len(self._queue)
        turns = self._worker_turns
        now = time.monotonic()
        # A worker that used no CPU since the last look sleeps or waits on a socket (a collector's backoff, its
        # answer): it is not kept from the GIL, and a pause would not help it.
        # One outside the exporters and hooks waits on nothing but the GIL (its wake-up was just set): a worker
        # the OS has not even scheduled (the other cores busy) uses no CPU either, and is starved all the same.
        worker_cpu = _thread_cpu(self._worker_clock)
        trying = not self._worker_in_io or worker_cpu is None or worker_cpu != self._worker_cpu_seen
        self._worker_cpu_seen = worker_cpu
        if turns != self._turns_seen:
            self._turns_seen, self._moved_at = turns, now
        elif trying and now - self._moved_at >= _STARVED_SECONDS and not self._stopping and \
                queued >= self._max_queue_size // 2 and \
                threading.get_ident() != self._worker.ident:
            time.sleep(_STAND_ASIDE_SECONDS)
            # The worker moved on meanwhile: it was starved, look again soon. Else it waits on something else.
            if self._worker_turns != turns:
                self._step = _FIRST_STEP
                self._turns_seen, self._moved_at = self._worker_turns, time.monotonic()
            else:
                self._step = min(self._step * 2, max(_FIRST_STEP, self._max_queue_size // 4))
        self._check_at = queued + self._step
        self._check_drops = self.dropped + self._step

    def _enqueue_sized(self, span: Span) -> None:
        """The locked path: size the span (a plain one counts ``PLAIN_SPAN_BYTES``), drop the oldest entries
        until it fits both bounds, queue it."""
        plain = span.input is None and span.output is None and len(span.attributes) <= PLAIN_MAX_ATTRIBUTES
        if plain:
            with self._lock:
                queue = self._queue
                full = bool(queue) and not self._sized and len(queue) == self._room and not self._stopping
                if full:
                    # Full of plain spans (a collector down, a burst): this one takes the oldest one's place.
                    # The steady state while the exporter cannot keep up, so the shortest way through the lock.
                    queue.popleft()
                    queue.append(span_fields(span))
                    self.dropped += 1
            if full:
                if self.dropped >= self._check_drops:  # a full queue may be a starved worker's too
                    self._backlogged()
                return
        size = PLAIN_SPAN_BYTES if plain else estimate_size(span)
        with self._lock:
            if self._stopping:
                return
            if size > self._max_queue_bytes:  # could never be queued: dropping others would not help
                self.dropped += 1
                return
            queue = self._queue
            while queue and (len(queue) >= self._max_queue_size
                             or self._queued_bytes_locked() + size > self._max_queue_bytes):
                self._drop_oldest_locked()
            if plain:
                queue.append(span_fields(span))
            else:
                queue.append([size, span_fields(span)])
                self._sized += 1
                self._sized_bytes += size
                self._room = self._room_locked()
            full = len(queue) == self._max_batch_size
        if full:
            self._wake.set()

    def _drop_oldest_locked(self) -> None:
        entry = self._queue.popleft()
        self.dropped += 1
        if entry.__class__ is list:
            self._sized -= 1
            self._sized_bytes -= entry[0]
            self._room = self._room_locked()

    def _room_locked(self) -> int:
        """The queue length below which a plain span still fits both bounds (0 once stopping: nothing is queued)."""
        if self._stopping:
            return 0
        plain_bytes = max(self._max_queue_bytes - self._sized_bytes, 0)
        return min(self._max_queue_size, self._sized + plain_bytes // PLAIN_SPAN_BYTES)

    def _queued_bytes_locked(self) -> int:
        return self._sized_bytes + (len(self._queue) - self._sized) * PLAIN_SPAN_BYTES

    # ---- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        self._worker_clock = _own_cpu_clock()
        if self._on_start is not None:
            with importing():  # a fork now waits for its imports rather than leave them half done in its child
                stop_on_exception(self._on_start)()
        prepared = False
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._worker_turns += 1
            if not prepared:  # the exporters' imports at the first wake-up, not competing with init() for the GIL
                prepared = True
                with importing():
                    for prepare in self._prepare_hooks:
                        stop_on_exception(prepare)()
                self._worker_turns += 1
            with self._flushed:
                flush_target = self._flush_requests
                flushing = flush_target != self._flushes_done
            stopping = self._stopping
            if deferred_work:
                with self._waiting():
                    run_deferred()  # a dropped stream's call, ended here if the program makes no other call
            if flushing and not stopping:
                self._run_hooks(self._flush_hooks)
            self._drain(everything=flushing or stopping)
            if not stopping:
                self._run_hooks(self._idle_hooks)
                if idle_tasks:
                    self._run_hooks(idle_tasks)
            with self._flushed:
                self._flushes_done = flush_target
                self._flushed.notify_all()
            if stopping:
                return

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        """Around work of the worker's that may wait on a socket or a backoff (exporters, hooks, a dropped stream's
        settlement with a shared store): ``_backlogged`` then looks at its CPU time to tell whether it is starved."""
        self._worker_in_io = True
        try:
            yield
        finally:
            self._worker_in_io = False

    def _run_hooks(self, hooks: Sequence[Callable[[], object]]) -> None:
        with self._waiting():
            for hook in hooks:
                # stop_on_exception's body: decorating each hook again at every turn cost ~50 µs a hook
                try:
                    hook()
                except Exception:
                    swallow_internal_error(getattr(hook, "__qualname__", repr(hook)))

    def _take_batch(self) -> list[SpanFields]:
        with self._lock:
            queue = self._queue
            count = min(len(queue), self._max_batch_size)
            self._check_at = self._max_batch_size  # the next full batch wakes the worker again
            self._worker_turns += 1
            if not self._sized:  # only plain spans: popped in one pass (appends race only at the other end)
                return [queue.popleft() for _ in range(count)]  # type: ignore[misc]
            batch: list[SpanFields] = []
            for _ in range(count):
                entry = queue.popleft()
                if entry.__class__ is list:
                    self._sized -= 1
                    self._sized_bytes -= entry[0]
                    entry = entry[1]
                batch.append(entry)  # type: ignore[arg-type]
            self._room = self._room_locked()
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

    def _export_batch(self, batch: list[SpanFields]) -> None:
        if self._export_entries is not None and (
                self._on_batch is None or self._reads_batches is not None and not self._reads_batches()):
            with self._waiting():
                taken = self._export_entries(batch)
            if taken is not None:
                self._worker_turns += 1
                with self._lock:  # counted here even past the deadline: ``_abandon`` never had it as ``_current``
                    if taken:
                        self.sent += len(batch)
                    else:
                        self.failed += len(batch)
                return
        dicts = wire_records(batch)
        self._worker_turns += 1
        delivered = True
        self._current = dicts
        with self._waiting():
            for exporter in self._exporters:
                ok = guard_exporter(exporter, "export", False)(dicts)
                self._worker_turns += 1
                delivered = delivered and bool(ok)
        if self._on_batch is not None:  # the plugins' export hook: it may wait on a socket too
            with self._waiting():
                stop_on_exception(self._on_batch)(dicts)
        with self._lock:
            self._current = None
            if self._abandoned:  # counted by _abandon
                return
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
        with self._lock:
            return self._queued_bytes_locked()

    def stats(self) -> dict[str, int]:
        # "failed" counts spans not delivered; of those, "spooled" were kept on disk for later. "unspooled": spans
        # delivered from the spool since (this run's, or an earlier run's).
        spooled = sum(int(getattr(exporter, "spooled", 0)) for exporter in self._exporters)
        unspooled = sum(int(getattr(exporter, "unspooled", 0)) for exporter in self._exporters)
        return {"queued": self.queued, "queued_bytes": self.queued_bytes, "sent": self.sent,
                "dropped": self.dropped, "failed": self.failed, "spooled": spooled, "unspooled": unspooled}

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export everything queued now; True if that finished within ``timeout`` seconds and every exporter's own
        ``force_flush`` says its batches arrived."""
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
            ok = bool(guard_exporter(exporter, "force_flush", False)(remaining)) and ok
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
            self._room = 0
        self._wake.set()
        if self._worker.is_alive():
            self._worker.join(max(deadline - time.monotonic(), 0.05))
        if self._worker.is_alive():
            self._abandon()
        for exporter in self._exporters:
            guard_exporter(exporter, "shutdown")()
        _LIVE_PROCESSORS.discard(self)

    def _abandon(self) -> None:
        """The deadline passed with the worker still at work, on a receiver that answers late or never (or a batch
        too many): the worker is a daemon thread and ends with the process, and what it holds with it. So here,
        on the thread that shuts down, exporters with ``abandon`` (those with a spool) keep what they have not
        delivered: the batch in flight and what is still queued."""
        with self._lock:
            self._abandoned = True
            current = self._current
            queued: list[SpanFields] = []
            while self._queue:
                entry = self._queue.popleft()
                queued.append(entry[1] if entry.__class__ is list else entry)  # type: ignore[arg-type]
            self._sized = self._sized_bytes = 0
            self.failed += len(queued) + len(current or ())
        size = self._max_batch_size
        batches = [wire_records(queued[start:start + size]) for start in range(0, len(queued), size)]
        for exporter in self._exporters:
            abandon = getattr(exporter, "abandon", None)
            if callable(abandon):
                stop_on_exception(abandon)(current, batches)


_LIVE_PROCESSORS: weakref.WeakSet[BatchProcessor] = weakref.WeakSet()


def _restart_workers_in_child() -> None:
    for processor in list(_LIVE_PROCESSORS):
        if not processor._stopping:
            processor._reinit_after_fork()


after_fork_in_child(_restart_workers_in_child)  # after the exporters' locks are new: the worker it starts uses them
