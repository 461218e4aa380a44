"""The lock that server processes sharing a file take in turn (``flock``; none on Windows, where one process
serves a database)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["file_locked", "lock_file", "unlock_file", "LOCKS_FILES"]

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover
    fcntl = None

#: Whether ``lock_file`` excludes other processes on this platform.
LOCKS_FILES = fcntl is not None


def lock_file(descriptor: int) -> None:
    """Take the lock, waiting until the other processes let go."""
    if fcntl is not None:
        fcntl.flock(descriptor, fcntl.LOCK_EX)


def unlock_file(descriptor: int) -> None:
    if fcntl is not None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


@contextmanager
def file_locked(descriptor: int) -> Iterator[None]:
    """Held by one process at a time (blocking until the others let go)."""
    lock_file(descriptor)
    try:
        yield
    finally:
        unlock_file(descriptor)
