"""The export worker's compression: gzip for request bodies, Zstandard (else gzip) for the spool.

zlib, gzip and the Zstandard module are imported when first used, by the export worker: not ``init()``'s to import.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["GZIP", "ZSTD", "gzip_body", "spooled_form", "decoded", "readable"]

GZIP = "gzip"
ZSTD = "zstd"
#: A spooled batch is one exporter batch (512 spans by default, at most the queue's byte bound, 32 MiB): a file that
#: claims to inflate past this was mangled on disk.
_MAX_SPOOLED_BATCH_BYTES = 256 * 1024 * 1024


def gzip_body(body: bytes) -> bytes:
    """What every compressed request body is sent as: level 1, the export worker's CPU matters more than a few bytes.

    A gzip member made by zlib in one call (``wbits=31``: header, deflate, CRC-32 and length), as ``gzip.compress``
    makes it with ``mtime=0``: ``gzip.compress`` with a time stamp runs CRC-32 as a call of its own, which gives the
    program's thread the GIL once more per body (zlib lets go of it over 5 KB; each time a busy program keeps it up to
    the switch interval, 5 ms), and copies the compressed body twice more to put the header and trailer around it.
    Any gzip reader takes either (the header's time stamp is 0, "none")."""
    import zlib

    return zlib.compress(body, 1, 31)


_zstd: Any = None


def _zstd_module() -> Any:
    """Python 3.14's ``compression.zstd``, else its backport (a dependency before 3.14); False if neither imports."""
    global _zstd
    if _zstd is None:
        try:
            if sys.version_info >= (3, 14):
                from compression import zstd  # type: ignore[import-not-found]
            else:
                from backports import zstd  # type: ignore[import-not-found,no-redef]
            _zstd = zstd
        except ImportError:
            _zstd = False
    return _zstd


def spooled_form(body: bytes) -> tuple[bytes, str]:
    """A plain batch as the spool keeps it, and its encoding: Zstandard at level 1 where it can be imported, else gzip.

    The spool is where a program's batches go while its collector is down (the default setup with no collector
    running: every batch). A batch of 512 LLM spans (~600 bytes of JSON each), per span on the export worker: gzip
    level 1 4.5 µs (a third of it CRC-32) for 7.0x; Zstandard level 1 0.75 µs for 9.5x (its negative levels and lz4
    are faster still but smaller by half)."""
    zstd = _zstd_module()
    if zstd is False:
        return gzip_body(body), GZIP
    return zstd.compress(body, 1), ZSTD


def readable(encoding: str) -> bool:
    """Whether this process can inflate a batch of ``encoding`` (Zstandard only where its module imports)."""
    return encoding == GZIP or _zstd_module() is not False


def decoded(body: bytes, encoding: str) -> bytes | None:
    """A spooled batch inflated again; None if it was mangled on disk (or is Zstandard, where it cannot be read:
    ``readable``)."""
    if encoding == GZIP:
        import gzip
        import zlib

        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            return None
    zstd = _zstd_module()
    if zstd is False:
        return None
    decompressor = zstd.ZstdDecompressor()
    try:
        plain: bytes = decompressor.decompress(body, max_length=_MAX_SPOOLED_BATCH_BYTES)
    except zstd.ZstdError:
        return None
    # One frame, whole: a cut file, a larger one (more frames, or past the bound) are mangled.
    return plain if decompressor.eof and not decompressor.unused_data else None
