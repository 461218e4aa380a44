"""What the routes share: the store, the settings, the alert engine and the report signer."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import HTTPException, Request

from ._alerts import AlertEngine
from ._control import ControlCache, ProcessBoard
from ._settings import Settings
from ._signing import ReportSigner
from ._store import Store
from ._time import parse_time

__all__ = ["AppState", "app_state", "time_param"]


class AppState:
    def __init__(self, store: Store, settings: Settings, owns_store: bool) -> None:
        self.store = store
        self.settings = settings
        self.owns_store = owns_store
        self.alerts = AlertEngine(store, settings)
        self.control = ControlCache(store.control_version,
                                    lambda: store.operator_actions(None, newest_first=False))
        self.processes = ProcessBoard()
        self._signer: ReportSigner | None = None
        self._signer_lock = threading.Lock()

    @property
    def signer(self) -> ReportSigner:
        """Loaded, or generated beside the database, on first need (startup calls it once)."""
        with self._signer_lock:
            if self._signer is None:
                self._signer = ReportSigner(self.settings.resolved_signing_key_path)
            return self._signer


def app_state(request: Request) -> AppState:
    state: Any = request.app.state.agentwatch
    return state  # type: ignore[no-any-return]


def time_param(value: str | None, name: str) -> int | None:
    try:
        return parse_time(value)
    except ValueError as error:
        raise HTTPException(422, f"{name}: {error}") from None
