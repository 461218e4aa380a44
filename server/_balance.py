"""Spreading kept-alive clients over the worker processes of ``serve --workers N``.

The workers share one listening socket, and a worker's event loop accepts every connection that is waiting when
it wakes: two SDK processes that connect at about the same time usually both land on one worker (8 times in 10
here), and as they keep their connections alive, that worker does all the work while the other idles (ingest at
~70k spans/s instead of ~110k on 2 cores). So each worker publishes, in a small file all of them map, how many
clients it is serving (a request in flight or answered within the last 50 ms); a worker serving at least two more
than the least busy other worker answers one of them with ``Connection: close``. The client reconnects (as HTTP
clients do, the SDK's exporter among them) and the accept goes to another worker; if not, the next close, 50 ms
later, tries again.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import tempfile
import time
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._file_lock import LOCKS_FILES, file_locked

__all__ = ["BOARD_ENV", "WorkerBoard", "ConnectionBalancer", "create_board_file", "worker_board"]

logger = logging.getLogger("agentwatch.server")

#: Where ``serve --workers N`` tells its worker processes the board's file is.
BOARD_ENV = "AGENTWATCH_WORKER_BOARD"

# pid; clients with a request in flight or just answered; of those, in flight; when published (monotonic ns)
_SLOT = struct.Struct("<qqqq")
_SLOTS = 64  # workers, counting those restarted after a crash: a dead worker's slot is taken over
# A client counts as active while its request is in flight and this long after its answer: a client under load
# sends its next request within a few milliseconds. ASGI does not tell when a kept-alive connection closes, so a
# gone client is only forgotten then. Also the least time between two closes, for the reconnect to be counted.
_LINGER_S = 0.05
_STAND_ASIDE_S = 0.005


def create_board_file() -> Path:
    """A board for the workers about to start, all slots free; the caller removes it when they have stopped."""
    handle, name = tempfile.mkstemp(prefix="agentwatch-workers-", suffix=".board")
    with os.fdopen(handle, "wb") as board:
        board.write(bytes(_SLOT.size * _SLOTS))
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


class WorkerBoard:
    """This worker's slot on the board, and what the others published in theirs."""

    def __init__(self, path: Path) -> None:
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), _SLOT.size * _SLOTS)
            self._pid = os.getpid()
            with file_locked(file.fileno()):  # workers that start together must not take one free slot
                self._offset = self._free_slot() * _SLOT.size
                self.publish(0, 0)

    def _free_slot(self) -> int:
        for index in range(_SLOTS):
            pid = _SLOT.unpack_from(self._map, index * _SLOT.size)[0]
            if pid == 0 or pid == self._pid or not _alive(pid):
                return index
        raise RuntimeError("no free slot on the worker board")

    def publish(self, active: int, in_flight: int) -> None:
        _SLOT.pack_into(self._map, self._offset, self._pid, active, in_flight, time.monotonic_ns())

    def fewest_elsewhere(self, linger_ns: int) -> int | None:
        """The fewest active clients of another live worker; None when this worker is the only one. A count
        published longer than ``linger_ns`` ago stands only for the requests that were then in flight."""
        now = time.monotonic_ns()
        fewest: int | None = None
        for pid, active, in_flight, published in _SLOT.iter_unpack(self._map):
            if pid == 0 or pid == self._pid:
                continue
            if now - published >= linger_ns:
                if not _alive(pid):
                    continue
                active = in_flight
            if fewest is None or active < fewest:
                fewest = active
        return fewest

    def close(self) -> None:
        self._map.close()


class ConnectionBalancer:
    """Pure ASGI middleware: counts this worker's active clients by address and, when it has at least two more
    than another worker, asks the client of the request at hand to reconnect (at most once per linger time, so
    that the reconnect has landed and been counted before the next). Runs on the event loop's thread only."""

    def __init__(self, app: ASGIApp, board: WorkerBoard, linger_s: float = _LINGER_S) -> None:
        self.app = app
        self._board = board
        self._linger = linger_s
        #: client address -> when its last request was answered; infinity while one is in flight
        self._clients: dict[tuple[str, int], float] = {}
        self._in_flight = 0
        self._last_close = float("-inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = scope.get("client") if scope["type"] == "http" else None
        if address is None:
            await self.app(scope, receive, send)
            return
        client = (address[0], address[1])
        self._clients[client] = _IN_FLIGHT
        self._in_flight += 1
        closing = self._should_close(client)
        try:
            await self.app(scope, receive, _closing(send) if closing else send)
        finally:
            self._in_flight -= 1
            if closing:
                self._clients.pop(client, None)
            else:
                self._clients[client] = time.monotonic()
            self._board.publish(self._active(time.monotonic()), self._in_flight)

    def _active(self, now: float) -> int:
        clients = self._clients
        gone = [client for client, answered in clients.items() if now - answered >= self._linger]
        for client in gone:
            del clients[client]
        return len(clients)

    def _should_close(self, client: tuple[str, int]) -> bool:
        now = time.monotonic()
        active = self._active(now)
        self._board.publish(active, self._in_flight)
        if active < 2 or now - self._last_close < self._linger:
            return False
        fewest = self._board.fewest_elsewhere(int(self._linger * 1e9))
        if fewest is None or active < fewest + 2:
            return False
        self._last_close = now
        return True


_IN_FLIGHT = float("inf")


def _closing(send: Send) -> Send:
    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            # The client reconnects within a millisecond, and the worker whose event loop is awake at that
            # moment wins the accept: this one, which just answered, unless its loop sits out a moment (the
            # requests it is storing go on in their threads meanwhile).
            time.sleep(_STAND_ASIDE_S)

    return send_closing


def worker_board() -> WorkerBoard | None:
    """This worker's slot when it is one of several that share a board (and the platform can lock the board's
    file while a slot is claimed); else None."""
    path = os.environ.get(BOARD_ENV)
    if not path or not LOCKS_FILES:
        return None
    try:
        return WorkerBoard(Path(path))
    except (OSError, ValueError, RuntimeError) as error:  # balancing is an optimisation: serve without it
        logger.warning("agentwatch serve: worker %s does not share the clients with the others (%s)", os.getpid(),
                       error)
        return None
