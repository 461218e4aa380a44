"""Running the collector from Python: uvicorn on a thread, for demos, notebooks and tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from ._app import create_app
from ._listen import bind
from ._read_timeouts import protocol_with_read_timeout
from ._settings import Settings
from ._store import Store

__all__ = ["ServerHandle", "start_background"]


class ServerHandle:
    """A collector running on a background thread. ``stop()`` shuts it down (also as a context manager)."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int, app: Any) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.app = app
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        from ._live import stop_live_streams

        stop_live_streams(self.app)  # open dashboards' event streams would hold up uvicorn's drain
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_background(host: str = "127.0.0.1", port: int = 0, db_path: str | Path | None = None, *,
                     settings: Settings | None = None, store: Store | None = None,
                     timeout: float = 30.0, log_level: str = "warning") -> ServerHandle:
    """Start a collector and return once it accepts connections. ``port=0`` picks a free port.

    ``settings`` defaults to the environment (API_KEY etc.) with ``host``, ``port`` and ``db_path`` applied.
    """
    if settings is None:
        settings = Settings.from_env(host=host, port=port, db_path=db_path)
    else:
        settings = settings.replace(host=host, port=port, **({"db_path": Path(db_path)} if db_path else {}))
    # Binding here, before uvicorn starts, gives the real port at once and no race for it.
    sock = bind(host, port)
    actual_port = sock.getsockname()[1]
    settings = settings.replace(port=actual_port)
    app = create_app(store=store, settings=settings)
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False,
                            http=protocol_with_read_timeout(settings.read_timeout_seconds))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="agentwatch-server",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not server.started:
            if not thread.is_alive():
                sock.close()
                raise RuntimeError("the collector failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the collector did not start within {timeout} s")
            time.sleep(0.01)
    except BaseException:  # a timeout, or Ctrl-C while it starts: the server is not left running
        server.should_exit = True
        thread.join(10)
        raise
    return ServerHandle(server, thread, host, actual_port, app)
