"""A bounded on-disk spool for batches the collector could not take (down at exit, retries exhausted).

One compressed batch per file (JSON for the collector, protobuf for an OTLP receiver): the body in Zstandard
(``.json.zst``) where the exporter had not compressed it for sending, the gzip body it sent (``.json.gz``, as every
batch was before), or, for the collector while it is known down, the export queue's entries as JSON rows in Zstandard
(``.rows1.zst``, made into the body when delivered); in a directory per destination URL, so a later run that reaches
the same receiver delivers them from its export worker. Files appear atomically (written under a temporary name, then
renamed), so concurrent processes never read a half-written batch; two processes delivering the same file is harmless
for the collector, which drops span ids it already stored (an OTLP backend may keep such a batch twice).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._compression import GZIP, ZSTD, readable, spooled_form
from ._compression import decoded as _decoded
from ._safe import logger
from ._span import _bits as _random_bits

if TYPE_CHECKING:
    from ._config import Config

__all__ = ["Spool", "spool_for", "default_spool_root", "user_cache_dir", "DEFAULT_SPOOL_MAX_BYTES", "GZIP_BODY",
           "ZSTD_BODY", "ZSTD_ROWS"]

DEFAULT_SPOOL_MAX_BYTES = 64 * 1024 * 1024
#: How a spooled batch is kept, told by its file name's ending: the receiver's body gzip'd as it was sent (every batch
#: before Zstandard), that body in Zstandard (one not compressed for sending: a receiver on this machine), or the export
#: queue's entries as JSON rows in Zstandard (``HttpExporter.export_entries``: the collector known down, or not
#: answering a batch of rows). The name says "json" for an OTLP receiver's protobuf bodies too. A new layout of the
#: rows gets a new ending, which an SDK that cannot read it does not list.
GZIP_BODY, ZSTD_BODY, ZSTD_ROWS = ".json.gz", ".json.zst", ".rows1.zst"
_FORMS = (GZIP_BODY, ZSTD_BODY, ZSTD_ROWS)
#: A spooled batch's temporary file, as ``open(path, "wb")`` opens it (binary on Windows too).
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)


def user_cache_dir() -> Path:
    """AgentWatch's per-user cache directory, as platformdirs would choose it (without the dependency): the
    spool, and the files that spare a later process work (entry points, remembered prices)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "agentwatch" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "agentwatch"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "agentwatch"


def default_spool_root() -> Path:
    return user_cache_dir() / "spool"


def _name_fields(path: Path) -> list[str]:
    """A spooled batch's name, ``<time ns>-<pid>-<random>[-<spans>]``, in its fields."""
    name = path.name
    return name[:name.index(".")].split("-")


class Spool:
    """Batches for one destination under ``root/<hash of url>/``, at most ``max_bytes`` in total."""

    def __init__(self, root: str | Path, url: str, *, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES) -> None:
        self._root = root
        self._directory: Path | None = None
        self._folder: str | None = None  # the directory's path as a str, for the os calls of ``_write``
        self.url = url
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped_batches = 0
        # The spool's size as last counted plus what this process wrote since: counting stats every file, which
        # made each write cost more the fuller the spool (37 ms at 5,000 files). Other processes delivering or
        # adding files make it stale: it is counted afresh whenever it says a batch would not fit, and after
        # every sixteenth of ``max_bytes`` written here (so processes spooling at once overshoot by little).
        self._size: int | None = None
        self._written_since_count = 0
        self._warned_full = False
        self._warned_unwritable = False

    @property
    def directory(self) -> Path:
        """``root/<hash of url>``: named on first use, from the export worker (hashlib costs init() ~2 ms)."""
        if self._directory is None:
            import hashlib

            self._directory = Path(self._root) / hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]
        return self._directory

    def _files(self, endings: tuple[str, ...] = _FORMS, limit: int | None = None) -> list[Path]:
        try:
            names = os.listdir(self.directory)
        except OSError:  # not created yet, or unusable (then write() says so)
            return []
        # Names start with a nanosecond timestamp: sorting delivers the oldest first. Paths made for the ones asked
        # for only: a spool of a collector down for hours holds thousands.
        directory = self.directory
        return [directory / name for name in sorted(name for name in names if name.endswith(endings))[:limit]]

    def size(self) -> int:
        """The bytes of the batches spooled (every process's): one directory read, a ``stat`` per file, no path
        objects (the first spooled batch of each run asks; pathlib cost ~40 µs a file)."""
        total = 0
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith(_FORMS):
                        try:
                            total += entry.stat().st_size
                        except OSError:  # delivered by another process meanwhile
                            pass
        except OSError:  # not created yet
            return 0
        return total

    def write(self, compressed_batch: bytes, spans: int = 0, form: str = GZIP_BODY) -> bool:
        """Keep one batch (already compressed as ``form`` says: ``GZIP_BODY``, ``ZSTD_BODY`` or ``ZSTD_ROWS``) of
        ``spans`` spans; False if the spool is full (the batch is then dropped). The count goes in the file's name, for
        ``spans_in``."""
        return self._write(compressed_batch, spans, form) is not None

    def write_batch(self, compressed_batch: bytes, spans: int = 0, form: str = GZIP_BODY) -> Path | None:
        """``write``, giving the file the batch went to (None: dropped), for a caller that may take it back."""
        name = self._write(compressed_batch, spans, form)
        return None if name is None else self.directory / name

    def _write(self, compressed_batch: bytes, spans: int, suffix: str) -> str | None:
        """``write_batch``: the name of the file written. The export worker's way when the collector is down, once per
        batch, so with few system calls: each gives a busy program's thread the GIL, and the worker waits up to the
        switch interval (5 ms) to have it back. The file is opened, written and closed with ``os`` calls, where
        ``Path.write_bytes`` also asked the file's size and whether it is a terminal; the directory is made when the
        file cannot be created (the first batch, or a spool removed meanwhile), not tried before each; and the name's
        random part comes from the span ids' generator (reseeded in a forked child) instead of ``os.urandom``."""
        if self._size is None or self._size + len(compressed_batch) > self.max_bytes \
                or self._written_since_count > self.max_bytes // 16:
            self._size = self.size()
            self._written_since_count = 0
        if self._size + len(compressed_batch) > self.max_bytes:
            self.dropped_batches += 1
            if not self._warned_full:
                self._warned_full = True
                logger.warning("agentwatch: spool %s is full (%d bytes); further undelivered spans are dropped",
                               self.directory, self.max_bytes)
            return None
        name = f"{time.time_ns():020d}-{os.getpid()}-{_random_bits(32):08x}-{max(spans, 0)}"
        directory = self.directory
        folder = self._folder
        if folder is None:
            folder = self._folder = os.fspath(directory)
        temporary = os.path.join(folder, f".{name}.tmp")
        try:
            try:
                handle = os.open(temporary, _WRITE_FLAGS, 0o666)
            except FileNotFoundError:
                directory.mkdir(parents=True, exist_ok=True)
                handle = os.open(temporary, _WRITE_FLAGS, 0o666)
            try:
                view = memoryview(compressed_batch)
                while view:
                    view = view[os.write(handle, view):]
            finally:
                os.close(handle)
            os.replace(temporary, os.path.join(folder, f"{name}{suffix}"))
            if not self.written:
                # Once per run, so a person looking at the cache knows where these spans were going.
                (directory / "destination.txt").write_text(self.url + "\n", encoding="utf-8")
        except OSError as error:  # read-only home, disk full: the batch is lost, said once, not per batch
            self.dropped_batches += 1
            if not self._warned_unwritable:
                self._warned_unwritable = True
                logger.warning("agentwatch: cannot write the spool %s (%s); undelivered spans are dropped",
                               directory, error)
            try:
                os.unlink(temporary)
            except OSError:
                pass
            return None
        self.written += 1
        self._size += len(compressed_batch)
        self._written_since_count += len(compressed_batch)
        return f"{name}{suffix}"

    @staticmethod
    def _readable() -> tuple[str, ...]:
        """The suffixes of the batches this process can inflate: a Zstandard batch spooled by a Python with the module
        waits, undelivered, for a run that has it (it counts toward the bound all the same)."""
        return _FORMS if readable(ZSTD) else (GZIP_BODY,)

    def pending(self, limit: int) -> list[Path]:
        return self._files(self._readable(), limit)

    def pending_of(self, pid: int) -> list[Path]:
        """The batches process ``pid`` spooled (its id is in their names), oldest first."""
        wanted = str(pid)
        return [path for path in self._files(self._readable()) if _name_fields(path)[1:2] == [wanted]]

    @staticmethod
    def spans_in(path: Path) -> int:
        """How many spans the batch in ``path`` holds, from its name (0 if a file of an older release)."""
        fields = _name_fields(path)
        return int(fields[3]) if len(fields) == 4 and fields[3].isdigit() else 0

    @staticmethod
    def encoding_of(path: Path) -> str:
        """How the batch in ``path`` is compressed (``"zstd"`` or ``"gzip"``), from its name."""
        return ZSTD if path.name.endswith(".zst") else GZIP

    @staticmethod
    def holds_rows(path: Path) -> bool:
        """Whether the batch in ``path`` is the export queue's entries as rows, not the receiver's body."""
        return path.name.endswith(ZSTD_ROWS)

    def write_body(self, body: bytes, spans: int, gzipped: bool) -> Path | None:
        """Keep a receiver's body: as it was sent if gzip'd, else compressed now, in Zstandard where it imports (with
        the collector on this machine and down, every batch comes here uncompressed), else gzip. The file, or None
        (dropped)."""
        if gzipped:
            return self.write_batch(body, spans)
        compressed, encoding = spooled_form(body)
        return self.write_batch(compressed, spans, ZSTD_BODY if encoding == ZSTD else GZIP_BODY)

    @staticmethod
    def keeps_rows() -> bool:
        """Whether ``write_rows`` may be called: Zstandard imports here (else the caller keeps the batch otherwise)."""
        return readable(ZSTD)

    def write_rows(self, rows: bytes, spans: int) -> Path | None:
        """Keep the export queue's entries as JSON ``rows`` in Zstandard (``ZSTD_ROWS``; only where ``keeps_rows``): the
        file, or None (dropped)."""
        return self.write_batch(spooled_form(rows)[0], spans, ZSTD_ROWS)

    @staticmethod
    def decoded(batch: bytes, encoding: str) -> bytes | None:
        """A batch read from the spool, inflated; None if mangled on disk (``_compression.decoded``)."""
        return _decoded(batch, encoding)

    @staticmethod
    def read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError:  # delivered by another process meanwhile
            return None

    @staticmethod
    def remove(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass


def spool_for(url: str, config: Config) -> Spool | None:
    """The spool ``config`` asks for (``spool_dir``, ``spool_max_bytes``) for batches bound for ``url``; None when
    ``spool_dir=""`` switches spooling off. For every exporter that sends to a receiver (``SpoolingExporter``)."""
    if config.spool_dir == "":
        return None
    root = config.spool_dir if config.spool_dir is not None else default_spool_root()
    return Spool(root, url, max_bytes=config.spool_max_bytes)
