"""SIGTERM: flush the queued spans, then end the process exactly as it would have ended without us.

Python runs ``atexit`` handlers on a normal exit but not when SIGTERM's default action kills the process
(``docker stop``, Kubernetes, systemd, a supervisor). ``install(client)`` puts a handler in front of the
current one; on SIGTERM it flushes the export queue (bounded by ``timeout``) and then:

- previous handler ``SIG_DFL`` (or not set from Python): releases the hard-budget reservations and the HALF_OPEN
  probe slot this process's calls in flight hold in Redis (fleet-wide limits: they would never settle, and would
  refuse the fleet's calls until they expire), restores the default and re-sends SIGTERM, so the process dies by
  the signal with the usual exit status (-15 / 143) — ``atexit`` is not run, as before;
- previous handler ``SIG_IGN``: returns (the signal stays ignored);
- previous handler a Python callable (uvicorn, gunicorn, the user's own): calls it with the same arguments (a
  handler that ends the process with ``sys.exit`` unwinds the calls in flight, which release their reservations
  as on any exception; one that lets them finish lets them settle).

A forked child (a ``multiprocessing`` worker) gets the handler found before ours back: its parent ends it with
SIGTERM (``Pool.terminate``) while the child's main thread may wait in C for a lock the parent holds. A Python handler
runs only once that thread is back in Python; a signal that lands just before the wait, or on another thread, leaves
it pending and the child waiting forever, where the default action would have ended it.

Signal handlers run on the main thread between two bytecodes, possibly while that thread is inside the
exporter's ``enqueue`` holding the queue lock that the export worker needs (or inside a Redis backend's lock). The
handler therefore checks those locks first; if it cannot take one, it returns at once and has the signal re-sent a
moment later, when the main thread has left the critical section.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._forking import after_fork_in_child, fork_safe_lock
from ._safe import logger

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["install", "uninstall", "installed"]

_Handler = Any  # signal.Handlers | Callable[[int, FrameType | None], Any] | int | None

_state_lock = fork_safe_lock(sys.modules[__name__], "_state_lock")
_client: Client | None = None
_previous: _Handler = None
_timeout: float = 5.0
_RETRY_DELAY = 0.01
_LOCK_PROBE = 0.05


def installed() -> bool:
    return _client is not None and signal.getsignal(signal.SIGTERM) is _handle


def install(client: Client, *, timeout: float = 5.0) -> bool:
    """Handle SIGTERM for ``client`` (idempotent). False where signals cannot be set (not the main thread)."""
    global _client, _previous, _timeout
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        return False
    with _state_lock:
        current = signal.getsignal(signal.SIGTERM)
        if current is _handle:
            _client, _timeout = client, timeout
            return True
        try:
            signal.signal(signal.SIGTERM, _handle)
        except (ValueError, OSError) as error:  # an embedded interpreter may refuse
            logger.debug("agentwatch: cannot handle SIGTERM: %s", error)
            return False
        _client, _previous, _timeout = client, current, timeout
    return True


def uninstall() -> None:
    """Put back the handler found by ``install`` (only if ours is still the current one)."""
    global _client, _previous
    with _state_lock:
        if _client is None:
            return
        previous, _client, _previous = _previous, None, None
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) is _handle:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        except (ValueError, OSError):
            pass


def _locks_free(client: Client) -> bool:
    lock = getattr(client.processor, "_lock", None)
    if lock is not None:
        if not lock.acquire(timeout=_LOCK_PROBE):
            return False
        lock.release()
    return all(backend.lock_free(_LOCK_PROBE) for backend in _redis_backends())


def _redis_backends() -> list[Any]:
    """The process's fleet-limits backends (none unless the program uses ``limits_backend``; looked up, not
    imported: the main thread may be inside an import, holding its lock)."""
    module = sys.modules.get("agentwatch._redis_backend")
    return module.backends() if module is not None else []


def _release_reservations() -> None:
    try:
        for backend in _redis_backends():
            backend.release_held()
    except Exception:  # never let it stop the process from ending
        logger.debug("agentwatch: SIGTERM: could not release the reservations of calls in flight", exc_info=True)


def _resend_later(signum: int) -> None:
    timer = threading.Timer(_RETRY_DELAY, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


def _flush(client: Client, timeout: float) -> None:
    try:
        if not client.flush(timeout):
            logger.warning("agentwatch: SIGTERM: could not export every queued span within %.1f s", timeout)
    except Exception:  # never let our flush stop the process from ending
        logger.debug("agentwatch: SIGTERM flush failed", exc_info=True)


def _handle(signum: int, frame: FrameType | None) -> Any:
    client, previous, timeout = _client, _previous, _timeout
    if client is not None:
        if not _locks_free(client):
            # Interrupted inside enqueue or a backend's lock (ours to finish first): come back once it is released.
            _resend_later(signum)
            return None
        if previous is not signal.SIG_IGN and not callable(previous):
            # The process dies below: its calls in flight will never settle, so what they hold fleet-wide is
            # released first (before the flush, which may wait for a receiver that is down).
            _release_reservations()
        _flush(client, timeout)
    if previous is signal.SIG_IGN:
        return None
    if callable(previous):
        return previous(signum, frame)
    # SIG_DFL or a handler not set from Python: die by the signal, as the process would have.
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (ValueError, OSError):
        pass
    os.kill(os.getpid(), signum)
    return None


def _forget_in_child() -> None:
    """After a fork: the child ends on SIGTERM as it would without us (see the module's docstring)."""
    global _client, _previous
    if _client is None:
        return
    previous, _client, _previous = _previous, None, None
    try:
        if signal.getsignal(signal.SIGTERM) is _handle:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        pass


after_fork_in_child(_forget_in_child)
