"""The lock that server processes sharing a file take in turn (``flock``; none on Windows, where one process
serves a database)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["file_locked", "LOCKS_FILES"]

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover
    fcntl = None

#: Whether ``file_locked`` excludes other processes on this platform.
LOCKS_FILES = fcntl is not None


@contextmanager
def file_locked(descriptor: int) -> Iterator[None]:
    """Held by one process at a time (blocking until the others let go)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
