"""One session budget for all pytest-xdist workers.

Each worker checks its LLM calls against its own session monitor (in process, before the request leaves). So that
the budget is the run's and not each worker's, every worker publishes what it spent to a SQLite file the controller
made, and tells its monitor's store what the others spent (``RunBudgetStore.set_spent_elsewhere``), so a block names
the run's spend and budget: in one background thread, every ``REFRESH_SECONDS``, never on the call path. Calls made
by several workers within one refresh may pass the budget together, as concurrent calls of one process may (a soft
budget's overshoot).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from agentwatch.instrumentation import Monitor, RunBudgetStore, logger

__all__ = ["REFRESH_SECONDS", "SharedSpend", "create_ledger"]

REFRESH_SECONDS = 0.05

_SCHEMA = "CREATE TABLE IF NOT EXISTS spend (worker TEXT PRIMARY KEY, usd REAL NOT NULL)"


def create_ledger(directory: Path) -> str:
    """The controller's SQLite file that its workers share (made before any worker starts)."""
    path = directory / "agentwatch-session-spend.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(_SCHEMA)
    return str(path)


class SharedSpend:
    """A worker's side: publishes its own spend and counts the other workers' against its session monitor's budget."""

    def __init__(self, ledger: str, worker: str, monitor: Monitor, store: RunBudgetStore) -> None:
        self._ledger = ledger
        self._worker = worker
        self._monitor = monitor
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentwatch-pytest-shared-spend", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Publish this worker's final spend and stop."""
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self._ledger, timeout=10.0)
        except sqlite3.Error:
            logger.exception("agentwatch: the pytest session ledger cannot be opened; this worker's budget is its own")
            return
        try:
            while True:
                stopping = self._stop.wait(REFRESH_SECONDS)
                self._exchange(connection)
                if stopping:
                    return
        finally:
            connection.close()

    def _exchange(self, connection: sqlite3.Connection) -> None:
        # The session monitor's store keeps the whole run's spend: its "last hour" is all of it, the others' included
        # (set only by this thread).
        spent = float(self._monitor.snapshot()["spend_last_hour"]) - self._store.spent_elsewhere
        try:
            with connection:
                connection.execute("INSERT INTO spend (worker, usd) VALUES (?, ?) "
                                   "ON CONFLICT(worker) DO UPDATE SET usd = excluded.usd", (self._worker, spent))
                (others,) = connection.execute("SELECT COALESCE(SUM(usd), 0) FROM spend WHERE worker != ?",
                                               (self._worker,)).fetchone()
        except sqlite3.Error:
            logger.warning("agentwatch: the pytest session ledger could not be read (retried)", exc_info=True)
            return
        self._store.set_spent_elsewhere(float(others))
