"""Built-in exporters: in-memory (for tests), HTTP to the collector, JSON lines, console."""

from __future__ import annotations

import operator
import os
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from ._forking import fork_safe_lock, importing
from ._remote_control import CONTROL_HEADER
from ._safe import logger
from ._unicode import without_lone_surrogates

if TYPE_CHECKING:
    import http.client
    from pathlib import Path

    from ._spool import Spool
from ._span import WireBatch, new_span_id, new_trace_id, wire_records

__all__ = ["InMemoryExporter", "HttpExporter", "HttpSender", "SpoolingExporter", "JsonLinesExporter", "ConsoleExporter",
           "ROWS_HEADER", "ROWS_MEDIA_TYPE", "ROWS_VERSION"]

#: The collector's answers to ``/api/ingest`` carry this header, valued ``ROWS_VERSION``, when it takes bodies of span
#: rows (``ROWS_MEDIA_TYPE``): each span as the export queue holds it (``span_fields``, its attributes as their keys and
#: their values), which the export worker writes without making a record per span (``HttpExporter.export_entries``).
ROWS_HEADER = "X-AgentWatch-Rows"
ROWS_VERSION = "1"
ROWS_MEDIA_TYPE = "application/vnd.agentwatch.rows+json"


def _gzip(body: bytes) -> bytes:
    """``_compression.gzip_body``: that module and the spool's are the export worker's, not ``import agentwatch``'s."""
    from ._compression import gzip_body

    return gzip_body(body)


def _nothing() -> None:
    return None


_encode: Any = None


def _dumps(value: Any) -> str:
    """``json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)`` through one encoder made
    once: ``json.dumps`` with arguments builds a new encoder per call (~2 µs), which a span per line paid."""
    global _encode
    if _encode is None:
        import json  # json and gzip only on the export worker: importing them is ~2 ms of regex compiling

        _encode = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False).encode
    return _encode(value)  # type: ignore[no-any-return]


def _json_bytes(value: Any) -> bytes:
    """orjson (a dependency: 0.44 us a span against 4.4 with json on the export worker); json if it cannot be
    imported (a broken install) or cannot serialise the value."""
    try:
        import orjson
    except ImportError:
        return _dumps(value).encode("utf-8")
    try:
        return orjson.dumps(value, default=str)
    except TypeError:  # e.g. non-str dict keys in user attributes
        return _dumps(value).encode("utf-8")


def _json_lines(spans: Sequence[dict[str, Any]]) -> str:
    """One JSON object per line; orjson (see ``_json_bytes``) unless it cannot be imported."""
    try:
        import orjson
    except ImportError:
        return "".join([line for span in spans for line in (_dumps(span), "\n")])
    try:
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        return b"".join([dumps(span, default=str, option=option) for span in spans]).decode("utf-8")
    except TypeError:  # e.g. non-str dict keys in user attributes
        return "".join([line for span in spans for line in (_dumps(span), "\n")])


class InMemoryExporter:
    """Keeps exported spans in ``.spans`` (a list of dicts), for assertions in users' own tests."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self._lock = fork_safe_lock(self)

    def export(self, spans: Sequence[dict[str, Any]]) -> bool:
        with self._lock:
            self.spans.extend(spans)
        return True

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()

    def by_kind(self, kind: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["kind"] == kind]

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


class JsonLinesExporter:
    """Appends one JSON object per span to a file (or any text stream)."""

    def __init__(self, path: str | Path | None = None, *, stream: IO[str] | None = None) -> None:
        if (path is None) == (stream is None):
            raise ValueError("JsonLinesExporter needs exactly one of path or stream")
        from pathlib import Path

        self._path = Path(path) if path is not None else None
        self._stream = stream
        self._lock = fork_safe_lock(self)
        # The file stays open between batches (reopened in a forked child): every system call the worker makes
        # gives the GIL away, and a busy program's thread makes it wait up to the switch interval (5 ms) to get
        # it back, so opening and closing the file per batch held the worker to a few batches a second.
        self._handle: IO[str] | None = None
        self._handle_pid = 0

    def prepare(self) -> None:
        """The export worker's imports for this exporter, before its first export (``_forking.importing``)."""
        _json_lines([])

    def export(self, spans: Sequence[dict[str, Any]]) -> bool:
        text = _json_lines(spans)
        try:
            self._write(text)
        except UnicodeEncodeError:  # a lone surrogate somewhere (a text file encodes before it writes): the rest go
            self._write(_json_lines([without_lone_surrogates(span) for span in spans]))
        return True

    def _write(self, text: str) -> None:
        with self._lock:
            if self._path is not None:
                handle = self._handle
                if handle is None or self._handle_pid != os.getpid():
                    handle = self._handle = self._path.open("a", encoding="utf-8")
                    self._handle_pid = os.getpid()
                handle.write(text)
                handle.flush()
            else:
                assert self._stream is not None
                self._stream.write(text)
                self._stream.flush()

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
            if handle is not None and self._handle_pid == os.getpid():
                handle.close()


class ConsoleExporter:
    """A one-line summary per span on stderr, for a quick look while developing."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def export(self, spans: Sequence[dict[str, Any]]) -> bool:
        stream = self._stream or sys.stderr
        for span in spans:
            duration = ((span["end_time_unix_nano"] or 0) - span["start_time_unix_nano"]) / 1e6
            extra = ""
            if span["kind"] == "llm":
                extra = (f" model={span['model']} in={span['input_tokens']} out={span['output_tokens']}"
                         f" cost=${span['cost_usd']:.6f}")
            stream.write(f"[agentwatch] {span['kind']:<9} {span['name']:<30} {span['status']:<7}"
                         f" {duration:8.1f}ms{extra}\n")
        return True

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


#: How much of the collector's answer is read: it is only ever logged (first 300 bytes) on a refusal.
MAX_ANSWER_BYTES = 64 * 1024
#: A batch for a collector on this machine larger than this is gzip'd all the same.
LOOPBACK_RAW_MAX_BYTES = 1024 * 1024


def _http_exception() -> type[Exception]:
    import http.client

    return http.client.HTTPException


class HttpSender:
    """POSTs bodies over a kept-alive connection with retries; shared by the HTTP and OTLP exporters.

    Uses the standard library on purpose: it adds no dependency and is never seen by the SDK's own
    HTTP instrumentation. Retries connection errors, 5xx and 429 with exponential backoff and jitter;
    warns once when the receiver is unreachable and carries on.
    """

    RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0,
                 max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 8.0, what: str = "collector") -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"expected an http(s) URL, got {url!r}")
        self.url = url
        self.path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._parsed = parsed
        host = parsed.hostname
        #: The receiver is on this machine: compressing for it costs CPU and saves nothing.
        self.loopback = host in ("localhost", "::1") or host.startswith("127.") and host.replace(".", "").isdigit()
        self._headers = {"User-Agent": "agentwatch", **(headers or {})}
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._what = what
        self._connection: http.client.HTTPConnection | None = None
        self._pid = os.getpid()
        self._warned = False
        self._stopped = threading.Event()
        #: The last attempt failed to reach the receiver; cleared by the next answer.
        self.down = False
        #: ... and it failed by waiting out the timeout (a receiver that hangs, or a host that drops packets), not
        #: at once (refused, reset, an error status): trying it again costs whoever waits another timeout.
        self.timed_out = False
        #: The body of the last 2xx answer (what the receiver says it did with the batch).
        self.answer = b""
        #: The operator-control version the collector's last answer announced (``_remote_control``).
        self.announced_control: str | None = None
        #: The receiver's last answer at ``path`` said it takes bodies of span rows (``ROWS_HEADER``).
        self.takes_rows = False
        #: The status of the last answer (0 before any).
        self.status = 0

    def _connect(self) -> http.client.HTTPConnection:
        if "http.client" not in sys.modules:
            with importing():  # with ssl and email ~20 ms, imported by the first request, which only the worker makes
                import http.client  # noqa: F401
        import http.client

        if self._pid != os.getpid():
            # A forked child must not write into the kept-alive socket it shares with its parent: the two
            # processes' requests and responses would interleave. Closing our copy leaves the parent's open.
            self._pid = os.getpid()
            self.close()
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._parsed.scheme == "https" else http.client.HTTPConnection
            self._connection = kind(self._parsed.hostname or "localhost", self._parsed.port, timeout=self._timeout)
        return self._connection

    def compresses(self, size: int) -> bool:
        """Whether a body of ``size`` bytes is sent gzip'd: always to another machine; to this one only when large
        (captured text: the collector takes at most 10 MB a body by default, 24 MB inflated)."""
        return not self.loopback or size > LOOPBACK_RAW_MAX_BYTES

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def post(self, path: str, body: bytes, content_type: str, *, gzipped: bool = True,
             precompressed: bool = False, max_answer: int = MAX_ANSWER_BYTES) -> tuple[int, bytes]:
        """One request; the answer is read up to ``max_answer`` bytes (the rest is never buffered)."""
        headers = {**self._headers, "Content-Type": content_type}
        if gzipped and not precompressed:
            body = _gzip(body)
        if gzipped or precompressed:
            headers["Content-Encoding"] = "gzip"
        reused = self._connection is not None and self._pid == os.getpid()
        connection = self._connect()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            # Only the first bytes are ever logged: a huge or endless answer must not cost the app memory.
            data = response.read(max_answer)
            announced = response.getheader(CONTROL_HEADER)
            if announced is not None:
                self.announced_control = announced
            if path == self.path:
                self.takes_rows = response.getheader(ROWS_HEADER) == ROWS_VERSION
        except ConnectionError:
            self.close()
            if not reused:
                raise
            # A kept-alive connection the receiver closed while it was idle (uvicorn after 5 s, most servers after
            # some seconds): no sign of the receiver being down. Once more at once, on a new connection; the
            # collector takes a batch sent twice once (span ids).
            return self.post(path, body, content_type, gzipped=False, precompressed=precompressed or gzipped,
                             max_answer=max_answer)
        except Exception:
            self.close()
            raise
        if response.will_close or not response.isclosed():
            self.close()  # an unread rest makes the kept-alive connection unusable
        return response.status, data

    def send(self, path: str, body: bytes, content_type: str, *, gzipped: bool = True,
             precompressed: bool = False, retries: int | None = None, retries_unanswered: int | None = None) -> str:
        """POST with retries: ``"sent"``, ``"refused"`` (an answer that retrying cannot change) or
        ``"unreachable"`` (connection errors, 5xx, 429: worth keeping for later). ``retries_unanswered``: fewer
        retries after an attempt that got no answer at all (refused, reset, timed out) than after a 5xx or 429,
        for a caller that has somewhere to keep the body meanwhile.

        While shutting down at most one attempt is made, and none once the receiver is known down, so
        that exit is not held up by a receiver that is not there.
        """
        if self._stopped.is_set() and self.down:
            return "unreachable"
        delay = self._backoff
        attempts = self._max_retries if retries is None else retries
        if gzipped and not precompressed:
            # Once, not once per attempt: a receiver that is down costs the worker up to six compressions a batch.
            body, precompressed = _gzip(body), True
        for attempt in range(attempts + 1):
            last = attempt == attempts
            try:
                status, data = self.post(path, body, content_type, gzipped=gzipped, precompressed=precompressed)
            except (OSError, _http_exception()) as error:
                problem = f"{type(error).__name__}: {error}"
                last = last or retries_unanswered is not None and attempt >= retries_unanswered
                self.timed_out = isinstance(error, TimeoutError)
            else:
                self.timed_out = False
                self.status = status
                if 200 <= status < 300:  # any 2xx: our collector answers 202, like ATP receivers
                    self.down = False
                    self.answer = data
                    return "sent"
                if status not in self.RETRY_STATUSES:
                    self.down = False
                    logger.warning("agentwatch: %s refused a batch (%s): %s", self._what, status, data[:300])
                    return "refused"
                problem = f"HTTP {status}"
            self._went_unanswered(problem)
            if last or self._stopped.wait(delay * (0.5 + _jitter())):
                return "unreachable"
            delay = min(delay * 2, self._max_backoff)
        return "unreachable"

    def _went_unanswered(self, problem: str) -> None:
        """The receiver did not take a request (``problem`` says why): it is down until it answers; warned once."""
        self.down = True
        if not self._warned:
            self._warned = True
            logger.warning("agentwatch: %s at %s not reachable (%s); spans are buffered and retried, the "
                           "program carries on", self._what, self.url, problem)

    def connects(self) -> bool:
        """Whether a connection to the receiver is open, or one opens now (a plain socket, closed again: the HTTP
        client, ~40 ms of imports with ssl and email, is imported only for a receiver that is there). One that does not
        open leaves the receiver down, as a request that could not reach it does."""
        connection = self._connection
        if connection is not None and connection.sock is not None and self._pid == os.getpid():
            return True
        import socket

        parsed = self._parsed
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            socket.create_connection((parsed.hostname or "localhost", port), timeout=self._timeout).close()
        except (OSError, ValueError) as error:  # ValueError: a port out of range
            self.timed_out = isinstance(error, TimeoutError)
            self._went_unanswered(f"{type(error).__name__}: {error}")
            return False
        return True

    def post_with_retries(self, path: str, body: bytes, content_type: str, *, gzipped: bool = True) -> bool:
        return self.send(path, body, content_type, gzipped=gzipped) == "sent"

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def begin_shutdown(self) -> None:
        """Exit has begun: wake a backoff sleep and make at most one more attempt per batch. The connection
        stays open, the export worker may be using it."""
        self._stopped.set()

    def warn_once(self, message: str, *args: object) -> None:
        """The receiver's one warning of the run (the first outage's, or this): a program is told once."""
        if self._warned:
            logger.debug(message, *args)
            return
        self._warned = True
        logger.warning(message, *args)

    @property
    def what(self) -> str:
        return self._what

    def stop(self) -> None:
        self._stopped.set()
        self.close()


class SpoolingExporter:
    """An exporter that POSTs each batch to one receiver with ``sender``, keeping what it could not deliver in
    ``spool`` (when one is given) for the export worker to deliver later, in this run or the next, once the receiver
    answers. The HTTP exporter and exporter plugins (OTLP) share it, so a receiver that is down costs the program
    the same whatever the format. Subclasses give the body (``body``) and its ``content_type``.

    With a spool, a batch the receiver does not answer is retried in place at most once (``SPOOLED_RETRIES``; a
    5xx or 429 answer gets the whole retry budget), and while the receiver is known down batches go to the spool
    without an attempt, but for one attempt every ``PROBE_INTERVAL``: the worker never sleeps out a retry budget
    per batch while spans pile up behind it and the oldest are dropped, and ``flush()`` is not held up by retries.
    """

    #: Spooled batches delivered per worker wake-up, so that new spans are not held up behind a large spool.
    SPOOL_FILES_PER_WAKE = 8
    #: Spooled batches delivered by a flush (``begin_flush``), which asks for everything to reach the receiver.
    SPOOL_FILES_PER_FLUSH = 256
    #: While the receiver is known down (a batch or a spooled batch it did not take): how often it is tried again;
    #: batches in between go straight to the spool, and the spool is left alone.
    PROBE_INTERVAL = 5.0
    #: Retries in place for a batch that has a spool to go to when the receiver does not answer: one, for a
    #: kept-alive connection it closed or a restart in progress; the spool is the retry after that.
    SPOOLED_RETRIES = 1

    content_type = "application/octet-stream"

    def __init__(self, sender: HttpSender, *, spool: Spool | None = None, max_retries: int = 5,
                 gzip: bool | None = None) -> None:
        self._sender = sender
        #: True / False: every batch gzip'd or not; None: the sender decides per batch (plain for this machine).
        self._gzip = gzip
        self.spool = spool
        self.spooled = 0
        #: Spans (of this run or an earlier one) delivered from the spool, and the batches that held them.
        self.unspooled = 0
        self.unspooled_batches = 0
        self._spool_next_check = 0.0
        self._spool_files_per_wake = self.SPOOL_FILES_PER_WAKE
        self._retries_before_spool = min(max_retries, self.SPOOLED_RETRIES)
        #: While the receiver is known down, when the next batch may try it (0: no outage known).
        self._probe_at = 0.0
        # Between the export worker and ``abandon`` (the thread that shuts down, once the deadline has passed):
        # the batch the worker is sending, the last one it finished, and the spool file ``abandon`` wrote the batch
        # in flight to (taken back out if the worker's send gets through after all).
        self._handover = fork_safe_lock(self, "_handover")
        self._in_flight: Sequence[dict[str, Any]] | None = None
        # The batch it last finished, weakly where the batch allows (the worker's do): held, its records would outlive
        # the export by a batch interval, long enough for CPython to move them to its oldest generation.
        self._finished: Callable[[], Sequence[dict[str, Any]] | None] = _nothing
        self._abandoned = False
        self._in_flight_spooled: Path | None = None
        #: A batch of rows being sent (``HttpExporter.export_entries``) and its span count: ``abandon`` spools it.
        self._in_flight_rows: tuple[bytes, int] | None = None
        #: How many batches the receiver answered and refused (401, 413, 422): they were dropped. Counted by the export
        #: worker only; ``force_flush`` compares it with the count it saw last, so a refusal made while it reads it is
        #: the next flush's, never lost (as it was from a flag read, then cleared).
        self._refusals = 0
        self._refusals_seen = 0

    @property
    def sender(self) -> HttpSender:
        return self._sender

    def body(self, spans: Sequence[dict[str, Any]]) -> bytes:
        """One batch as the receiver takes it, uncompressed."""
        raise NotImplementedError

    def selected(self, spans: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        """The spans of a batch this receiver gets (all of them, unless a subclass leaves some out)."""
        return spans

    def delivered(self, spans: Sequence[dict[str, Any]]) -> None:
        """Called after the receiver took ``spans`` (not for spooled batches): for follow-up requests."""

    def body_of_rows(self, rows: bytes) -> bytes | None:
        """The body of a batch the spool kept as the export queue's entries (``ZSTD_ROWS``), from their JSON; None if
        they cannot be read back (mangled on disk). Only an exporter that takes entries (``export_entries``) has any."""
        return None

    def rejected_in(self, answer: bytes) -> int:
        """How many spans of a batch the receiver took (2xx) its ``answer`` says it rejected, logged; 0 unless a
        subclass reads its receiver's answers."""
        return 0

    def prepare(self) -> None:
        """The export worker's imports for this exporter, before its first export (``_forking.importing``): gzip, and
        for the spool hashlib (its directory's name) and Zstandard. The HTTP client comes with the first request
        (``HttpSender._connect``): a program whose collector is not there never imports it."""
        import gzip  # noqa: F401

        if self.spool is not None:
            self.spool.directory  # noqa: B018
            from ._compression import readable

            readable("zstd")  # imports the Zstandard module

    def _gzipped_body(self, spans: Sequence[dict[str, Any]]) -> tuple[bytes, bool]:
        """A batch's body as sent (gzip'd, or plain for a receiver that gets plain bodies) and whether gzip'd."""
        try:
            body = self.body(spans)
        except UnicodeEncodeError:  # a lone surrogate somewhere: every other span of the batch still goes
            body = self.body([without_lone_surrogates(span) for span in spans])
        gzipped = self._compresses(len(body))
        return (_gzip(body) if gzipped else body), gzipped

    def _compresses(self, size: int) -> bool:
        """Whether a body of ``size`` bytes goes gzip'd: as configured, else as the sender decides."""
        return self._sender.compresses(size) if self._gzip is None else self._gzip

    def export(self, spans: Sequence[dict[str, Any]]) -> bool:
        with self._handover:
            if self._abandoned:  # the shutdown deadline passed: ``abandon`` spooled this batch already
                return False
            self._in_flight = spans
        try:
            return self._export(spans)
        finally:
            with self._handover:
                self._in_flight = None
                self._finished = weakref.ref(spans) if isinstance(spans, WireBatch) else lambda: spans

    def _export(self, batch: Sequence[dict[str, Any]]) -> bool:
        spans = self.selected(batch)
        if not spans:
            return True
        body, gzipped = self._gzipped_body(spans)
        spool = self.spool
        attempted = spool is None or self.may_try()
        # Known down: kept for later without an attempt.
        outcome = self._send(body, self.content_type, gzipped, gzipped) if attempted else "unreachable"
        with self._handover:
            if self._abandoned:
                return self._taken_back(outcome, len(spans))
        if outcome == "sent":
            self._answered()
            self.delivered(spans)
            return True
        if outcome == "refused":
            self._refusals += 1
        if outcome == "unreachable":  # the sender is down now
            if attempted:  # not put off by the batches spooled meanwhile: a busy program would never probe again
                self._probe_at = time.monotonic() + self.PROBE_INTERVAL
            if spool is not None and spool.write_body(body, len(spans), gzipped) is not None:
                self.spooled += len(spans)
        return False

    def _send(self, body: bytes, content_type: str, gzipped: bool, precompressed: bool) -> str:
        """One batch to the receiver (``HttpSender.send``'s outcome). With a spool: an answering receiver (5xx, 429)
        gets the whole retry budget, one that does not answer one retry; a probe of a receiver known down, none."""
        spool, sender = self.spool, self._sender
        return sender.send(sender.path, body, content_type, gzipped=gzipped, precompressed=precompressed,
                           retries=0 if spool is not None and sender.down else None,
                           retries_unanswered=None if spool is None else self._retries_before_spool)

    def _taken_back(self, outcome: str, count: int) -> bool:
        """A batch of ``count`` spans whose send ``abandon`` overtook (the hand-over lock held): it went to the spool
        meanwhile, and comes out again if it arrived after all. Whether it did."""
        spooled, self._in_flight_spooled = self._in_flight_spooled, None
        if outcome == "sent" and self.spool is not None and spooled is not None:
            self.spool.remove(spooled)
            self.spooled -= count
        return outcome == "sent"

    def _answered(self) -> None:
        """The receiver took a batch: back after an outage, what it missed goes at the next wake-up; and what it says
        it rejected of the batch (read before ``delivered`` sends anything else) counts as a refusal for flush()."""
        if self._probe_at:
            self._probe_at = self._spool_next_check = 0.0
        if self.rejected_in(self._sender.answer):
            self._refusals += 1

    def may_try(self) -> bool:
        """Whether another request to the receiver (the operator-control poll) may be made now: not while it is known
        down and its next probe is not due, when each request may wait out the timeout of a receiver that hangs."""
        return not self._sender.down or time.monotonic() >= self._probe_at

    def probed(self, reached: bool, timed_out: bool = False) -> None:
        """Another request to the receiver (the operator-control poll) was answered (``reached``) or not: it counts as
        a probe, so that a program exporting nothing still finds the receiver back, and one that is busy tries it
        once per ``PROBE_INTERVAL``, whichever request comes first."""
        sender = self._sender
        if reached:
            sender.down = sender.timed_out = False
            if self._probe_at:  # back after an outage: what it missed goes at the next wake-up
                self._probe_at = self._spool_next_check = 0.0
            return
        sender.down, sender.timed_out = True, timed_out
        self._probe_at = time.monotonic() + self.PROBE_INTERVAL

    def on_idle(self) -> None:
        """Called by the export worker after each drain: deliver a few spooled batches. At exit only this run's,
        and only to a receiver that answered last (exit never waits for one that is down)."""
        spool = self.spool
        if self._abandoned:  # past the shutdown deadline: the spool waits for a later run
            return
        if self._sender.stopping:
            if spool is not None and self.spooled and not self._sender.down:
                self._deliver(spool, spool.pending_of(os.getpid()))
            return
        now = time.monotonic()
        if spool is None or now < self._spool_next_check or self._sender.down and now < self._probe_at:
            return
        per_wake, self._spool_files_per_wake = self._spool_files_per_wake, self.SPOOL_FILES_PER_WAKE
        pending = spool.pending(per_wake + 1)
        if not self._deliver(spool, pending[:per_wake]):
            self._probe_at = time.monotonic() + self.PROBE_INTERVAL  # known down (the sender says so) until then
            return
        # Nothing left: look again in a while (another process may spool meanwhile); more left: next wake-up.
        more = len(pending) > per_wake
        self._spool_next_check = time.monotonic() + (0.0 if more else 5.0)

    def _deliver(self, spool: Spool, paths: Sequence[Path]) -> bool:
        """Send spooled batches, one attempt each; False at the first the receiver did not take (kept for later)."""
        for path in paths:
            body = spool.read(path)
            if body is None:  # another process delivered it meanwhile
                continue
            encoding = spool.encoding_of(path)
            precompressed = encoding == "gzip" and self._gzip is not False
            if not precompressed:  # Zstandard (sent as the receiver takes plain batches), or plain bodies configured
                body = spool.decoded(body, encoding)
                if body is not None and spool.holds_rows(path):
                    body = self.body_of_rows(body)
                if body is None:  # mangled on disk: dropped, as a batch the receiver refuses is
                    spool.remove(path)
                    continue
            gzipped = precompressed or self._compresses(len(body))
            outcome = self._sender.send(self._sender.path, body, self.content_type, gzipped=gzipped,
                                        precompressed=precompressed, retries=0)
            if outcome == "unreachable":
                return False
            self._probe_at = 0.0
            # "refused" (e.g. a file mangled on disk) cannot improve by retrying: drop it, as a refused batch is.
            spool.remove(path)
            if outcome == "sent":
                self.unspooled_batches += 1
                self.unspooled += spool.spans_in(path)
        return True

    def begin_flush(self) -> None:
        """A flush wants everything at the receiver: a receiver known down is tried again at once (one attempt,
        as at exit), and if it answers, this wake-up delivers more of the spool than usual. Not one whose last
        attempt waited out the timeout, before its next probe is due: a program that flushes per request would
        wait that long on every flush (a remote receiver behind a firewall that drops packets); its batches go to
        the spool and the flush returns at once."""
        sender = self._sender
        if sender.down and sender.timed_out and time.monotonic() < self._probe_at:
            return
        self._probe_at = self._spool_next_check = 0.0
        self._spool_files_per_wake = self.SPOOL_FILES_PER_FLUSH

    def begin_shutdown(self) -> None:
        self._sender.begin_shutdown()

    def abandon(self, current: Sequence[dict[str, Any]] | None, queued: Sequence[Sequence[dict[str, Any]]]) -> None:
        """The shutdown deadline passed with the export worker still at work (a receiver that accepts connections
        but answers late or never): on the thread that shuts down, spool what this exporter has not delivered (the
        batch it is sending, ``current`` if it has not had it yet, the ``queued`` batches), since the worker will
        not outlive the process. From now on ``export`` sends nothing."""
        with self._handover:
            if self._abandoned:
                return
            self._abandoned = True
            in_flight = self._in_flight
            pending = [batch for batch in queued if batch]
            if current is not None and current is not in_flight and current is not self._finished():
                pending.insert(0, current)
            spool = self.spool
            kept = lost = 0
            if self._in_flight_rows is not None:
                rows, count = self._in_flight_rows
                path = spool.write_rows(rows, count) if spool is not None and spool.keeps_rows() else None
                if path is None:
                    lost += count
                else:
                    kept += count
                    self._in_flight_spooled = path
            for batch in ([in_flight] if in_flight is not None else []) + pending:
                spans = self.selected(batch)
                if not spans:
                    continue
                body, gzipped = self._gzipped_body(spans)
                path = spool.write_body(body, len(spans), gzipped) if spool is not None else None
                if path is None:
                    lost += len(spans)
                    continue
                kept += len(spans)
                if batch is in_flight:
                    self._in_flight_spooled = path
            self.spooled += kept
        if not kept and not lost:
            return
        sender = self._sender
        if lost:
            sender.warn_once("agentwatch: %s at %s did not answer by the shutdown deadline: %d spans not delivered"
                             "%s", sender.what, sender.url, lost,
                             f" ({kept} written to the spool)" if kept else " (no spool)")
        else:
            sender.warn_once("agentwatch: %s at %s did not answer by the shutdown deadline: %d spans written to the "
                             "spool %s, delivered by a later run", sender.what, sender.url, kept,
                             spool.directory if spool is not None else "")

    def force_flush(self, timeout: float = 5.0) -> bool:
        """False while the receiver is known down (what the flush exported went to the spool, or was lost), or if it
        refused a batch since the last flush (a wrong API key: those spans were dropped)."""
        refusals = self._refusals
        refused = refusals != self._refusals_seen
        self._refusals_seen = refusals
        return not self._sender.down and not refused

    def shutdown(self) -> None:
        self._sender.stop()


#: The records the collector also gets at ``/api/alerts/sdk-alert`` (``HttpExporter._forward_breaker_records``).
_FORWARDED_KINDS = frozenset({"breaker", "alert"})
_kind_of = operator.itemgetter("kind")
_entry_kind = operator.itemgetter(4)  # a queue entry's kind (``span_fields``)


class HttpExporter(SpoolingExporter):
    """Sends JSON batches of span dicts to the collector's ``/api/ingest`` (gzip'd unless it is on this machine),
    spooling what the collector could not take (``SpoolingExporter``); forwards breaker transitions and alerts to
    ``/api/alerts/sdk-alert`` and follows the collector's operator control."""

    content_type = "application/json"

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 10.0, max_retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 8.0, spool: Spool | None = None) -> None:
        try:
            sender = HttpSender(url, headers={"X-API-Key": api_key} if api_key else None, timeout=timeout,
                                max_retries=max_retries, backoff=backoff, max_backoff=max_backoff)
        except ValueError:
            raise ValueError(f"proxy_url must be an http(s) URL, got {url!r}") from None
        super().__init__(sender, spool=spool, max_retries=max_retries)
        self.url = url
        path = sender.path
        self._alert_path = path.rsplit("/ingest", 1)[0] + "/alerts/sdk-alert" if "/ingest" in path else None
        #: Where the collector's operator-control feed is, and who follows it (set by ``_remote_control``).
        self.control_path = path.rsplit("/ingest", 1)[0] + "/control" if "/ingest" in path else None
        self.control: Any = None
        #: The collector announced rows but refused a batch of them (415): records for the rest of the run.
        self._rows_refused = False

    def prepare(self) -> None:
        """As ``SpoolingExporter.prepare``, and JSON."""
        super().prepare()
        _json_bytes([])

    @property
    def announced_control(self) -> str | None:
        return self._sender.announced_control

    def body(self, spans: Sequence[dict[str, Any]]) -> bytes:
        return _json_bytes(list(spans))

    def delivered(self, spans: Sequence[dict[str, Any]]) -> None:
        if self._alert_path:
            self._forward_breaker_records(spans)

    def export_entries(self, entries: list[Any]) -> bool | None:
        """The export worker's batch as the queue holds it (``span_fields``), before any record is made, as JSON rows
        (one array a span, its attributes as their keys and their values) made by orjson straight from the entries:
        taken (True: delivered, False: not) when the collector is known down and its next probe is not due, or no
        connection to it opens (written to the spool as rows), or when its last answer said it takes rows
        (``ROWS_HEADER``; sent as rows, spooled as rows if it does not answer). None otherwise (not taken: the worker
        makes the records and calls ``export``): a collector that has not answered yet or takes no rows (a connection
        to it opened), a batch with a record to forward (``delivered``), no Zstandard for a batch to spool, or a value
        orjson cannot write. Never raises into the worker's other path: an error is logged and the batch goes the usual
        way.

        Every batch of the default setup comes here: records made per span only to be serialised cost the export
        worker (the program's GIL held) ~1.4 µs a span against ~0.24 for the rows, and rows are half the bytes to
        compress, send and parse. The records of a spooled batch are made when it is delivered (``body_of_rows``).

        The worker's ``_current`` stays None for these: a batch being sent is ``_in_flight_rows`` for ``abandon`` (the
        shutdown deadline passed), one to spool is written under the hand-over lock ``abandon`` takes, so that it
        neither misses nor repeats it."""
        spool = self.spool
        sender = self._sender
        down = spool is not None and not self.may_try()
        # Not asked while the collector is known down: every batch is spooled as rows then, whatever it holds.
        forwards = not down and self._alert_path is not None and \
            not _FORWARDED_KINDS.isdisjoint(map(_entry_kind, entries))
        probing = False
        if not down and (not sender.takes_rows or self._rows_refused or forwards):
            # The records' way: to a receiver that has not said it takes rows, or with records to forward. Unless
            # nothing is there (a receiver that never answered, or one known down whose probe is due): asked for a
            # connection first, it has the batch spooled as rows if none opens. The records, their JSON and their gzip
            # cost the worker ~20k machine instructions a span more, paid by every process's first batch and one batch
            # in five while the collector is down. (The rows are made first, for ``abandon`` while the connection is
            # being made: a receiver that is there and has not answered yet costs a process's first batch ~4k a span.)
            if forwards or spool is None or not spool.keeps_rows() or sender.status and not sender.down:
                return None
            probing = True
        try:
            import orjson

            rows = orjson.dumps(entries, default=str)
        except (ImportError, TypeError):  # TypeError: orjson's error (a lone surrogate, a key it cannot write)
            return None
        with self._handover:
            if down or self._abandoned:
                return self._spooled_rows(rows, len(entries))
            self._in_flight_rows = (rows, len(entries))  # ``abandon`` spools them (a connection that hangs)
        if probing:
            reached = False
            try:
                reached = sender.connects()
            finally:
                with self._handover:
                    self._in_flight_rows = None
                    taken_back = self._taken_back("unreachable", len(entries)) if self._abandoned else None
            if taken_back is not None:
                return taken_back
            if reached:
                return None
            self._probe_at = time.monotonic() + self.PROBE_INTERVAL
            with self._handover:
                return self._spooled_rows(rows, len(entries))
        outcome = "unreachable"  # what a send that raised leaves for ``_taken_back``
        try:
            outcome = self._send(rows, ROWS_MEDIA_TYPE, self._compresses(len(rows)), False)
        finally:
            with self._handover:
                self._in_flight_rows = None
                taken_back = self._taken_back(outcome, len(entries)) if self._abandoned else None
        if taken_back is not None:
            return taken_back
        if outcome == "sent":
            self._answered()
            return True
        if outcome == "refused":
            if sender.status in (401, 403):  # refused whatever the format: dropped, as records would be
                self._refusals += 1
                return False
            self._rows_refused = True  # a receiver that does not take rows after all: the records' way, from now on
            return None
        self._probe_at = time.monotonic() + self.PROBE_INTERVAL  # unreachable
        if spool is None:
            return False
        with self._handover:
            return self._spooled_rows(rows, len(entries))

    def _spooled_rows(self, rows: bytes, count: int) -> bool | None:
        """Spool a batch of rows (the hand-over lock held): False, or None with no Zstandard (the records' way)."""
        spool = self.spool
        if spool is None or not spool.keeps_rows():
            return None
        if spool.write_rows(rows, count) is not None:
            self.spooled += count
        return False

    def body_of_rows(self, rows: bytes) -> bytes | None:
        """The records' body of entries ``export_entries`` spooled, as ``body`` makes it when exporting them."""
        import orjson

        try:
            entries = orjson.loads(rows)
            return self.body(wire_records(entries)) if entries.__class__ is list else None
        except (ValueError, TypeError):  # not JSON, or not rows of span fields: mangled on disk
            return None

    def rejected_in(self, answer: bytes) -> int:
        """The collector stores a batch's valid spans and answers 202 with how many it rejected and why (a span it
        cannot store, e.g. attributes nested deeper than it takes): those were dropped, said here instead of never."""
        if b'"rejected"' not in answer:
            return 0
        import json

        try:
            parsed = json.loads(answer)
            rejected = int(parsed.get("rejected") or 0)
        except (ValueError, TypeError, AttributeError):
            return 0
        if rejected > 0:
            reasons = json.dumps(parsed.get("errors") or [])[:300]
            logger.warning("agentwatch: the collector stored a batch but rejected %d of its spans (dropped): %s",
                           rejected, reasons)
        return max(rejected, 0)

    def _post_json(self, path: str, payload: Any, *, gzipped: bool = True) -> bool:
        return self._sender.post_with_retries(path, _json_bytes(payload), "application/json", gzipped=gzipped)

    def _forward_breaker_records(self, spans: Sequence[dict[str, Any]]) -> None:
        """The collector's live breaker view and alert history read ``/api/alerts/sdk-alert``."""
        assert self._alert_path is not None
        if _FORWARDED_KINDS.isdisjoint(map(_kind_of, spans)):  # the usual batch: looked through in C, not a loop
            return
        for span in spans:
            if span["kind"] not in _FORWARDED_KINDS:
                continue
            record = {"type": "transition" if span["kind"] == "breaker" else "alert",
                      "timestamp_unix_nano": span["start_time_unix_nano"], **span["attributes"]}
            self._post_json(self._alert_path, record, gzipped=False)  # one small record: not worth gzip

    def on_idle(self) -> None:
        """After each drain: follow operator control (not at exit), then the spool (``SpoolingExporter.on_idle``)."""
        if self.control is not None and not self._sender.stopping:
            self.control.on_idle()
        super().on_idle()

    def verify(self) -> bool:
        """Send one test span and report whether the collector accepted it."""
        now = time.time_ns()
        span = {"trace_id": new_trace_id(), "span_id": new_span_id(), "parent_span_id": None,
                "name": "agentwatch.verify", "kind": "event", "status": "ok", "start_time_unix_nano": now,
                "end_time_unix_nano": now, "agent_id": None, "agent_name": None, "agent_role": None,
                "model": None, "provider": None, "input_tokens": 0, "output_tokens": 0,
                "cached_input_tokens": 0, "cost_usd": 0.0, "attributes": {"verify": True}}
        try:
            status, _ = self._sender.post(self._sender.path, _dumps([span]).encode("utf-8"), "application/json")
        except (OSError, _http_exception()):
            return False
        return status < 300


def _jitter() -> float:
    """A uniform draw in [0, 1) for a retry's backoff, from the OS: only when a send failed (the random module is not
    imported by ``import agentwatch`` for this)."""
    return int.from_bytes(os.urandom(4), "big") / 4294967296.0
