"""The FastAPI application: API routes, the dashboard, and the background workers' life cycle."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import threading
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from . import (
    _routes_alerts,
    _routes_control,
    _routes_crons,
    _routes_ingest,
    _routes_otlp,
    _routes_query,
    _routes_reports,
)
from ._backends import open_store
from ._balance import ConnectionBalancer, worker_board
from ._body_limit import BodyLimitMiddleware
from ._live import router as live_router
from ._live import stop_live_streams
from ._model import AtpSpan, NativeSpan
from ._paths import TrailingSlashMiddleware
from ._routes_sessions import router as sessions_router
from ._security import SecurityMiddleware, served_hosts
from ._settings import Settings
from ._sqlite import SQLiteStore
from ._state import AppState, app_state
from ._stats import DAY_NS
from ._store import Store
from ._time import now_ns

__all__ = ["create_app", "app_from_env", "Maintenance", "STATIC_DIR"]

logger = logging.getLogger("agentwatch.server")

STATIC_DIR = Path(str(resources.files(__package__ or "agentwatch.server").joinpath("static")))


def _docs_assets() -> Path | None:
    """Swagger UI's files, from the fastapi-offline package: the CSP allows no CDN, and a collector may be offline."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").exists() else None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("agentwatch")
    except Exception:
        return "0+unknown"


class Maintenance:
    """Deletes data older than ``DATA_RETENTION_DAYS``: once at start, then every maintenance interval."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, int]:
        days = self._settings.data_retention_days
        if days <= 0:
            return {}
        removed = self._store.purge(now_ns() - days * DAY_NS)
        if any(removed.values()):
            logger.info("retention: removed %s", removed)
        return removed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agentwatch-retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._settings.maintenance_interval_seconds):
            try:
                self.run_once()
            except Exception:
                logger.exception("retention run failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _add_span_schemas(app: FastAPI) -> None:
    """The ingest body is read raw (for size caps and gzip), so its models are added to the schema here."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (NativeSpan, AtpSpan):
            generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(generated.pop("$defs", {}))
            components[model.__name__] = generated
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class _AsciiJSONResponse(JSONResponse):
    """JSON escaped to ASCII: a lone UTF-16 surrogate the client sent (valid JSON) goes back as the escape it came
    in, where UTF-8 cannot encode it at all."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _quotable(value: Any) -> Any:
    """``value`` with NaN and the infinities as the words that spelled them: Python's JSON parser reads those words
    (``json.dumps`` writes them), but no JSON can quote them back as numbers. Walked with a stack, not by
    recursion: an input nested 500 lists deep (which the parser reads) recursed past Python's limit."""
    root = [value]
    pending: list[tuple[Any, Any]] = [(root, 0)]
    while pending:
        container, key = pending.pop()
        item = container[key]
        if isinstance(item, float) and not math.isfinite(item):
            container[key] = _NON_FINITE[repr(item)]
        elif isinstance(item, dict):
            container[key] = mapping = dict(item)
            pending.extend((mapping, name) for name in mapping)
        elif isinstance(item, list):
            container[key] = items = list(item)
            pending.extend((items, index) for index in range(len(items)))
    return root[0]


async def _invalid_request(request: Request, error: Exception) -> Response:
    # FastAPI's own answer (422, the errors with the input they quote), which failed with a 500 when that input
    # held a lone surrogate, or NaN or Infinity.
    assert isinstance(error, RequestValidationError)
    detail = jsonable_encoder(error.errors())
    try:
        json.dumps(detail, allow_nan=False)
    except ValueError:  # only then: most 422s quote no NaN, and need no copy
        detail = _quotable(detail)
    except RecursionError:  # an input nested deeper than the encoder goes: the errors without the input
        detail = [{key: item for key, item in entry.items() if key != "input"} for entry in detail]
    return _AsciiJSONResponse({"detail": detail}, status_code=422)


_GC_THRESHOLD = 20_000


def create_app(store: Store | None = None, settings: Settings | None = None) -> FastAPI:
    """The collector app. Without ``store`` it opens the store the settings name (``open_store``: ClickHouse for
    ``AGENTWATCH_STORE`` / ``--store``, else the SQLite file of ``settings.db_path``) and closes it on shutdown;
    a given store is left open for its owner."""
    if settings is None:
        settings = (Settings.from_env(db_path=store.path) if isinstance(store, SQLiteStore)
                    else Settings.from_env())
    settings.validate()  # settings given by a program are checked as the environment's are
    owns_store = store is None
    if store is None:
        store = open_store(settings)
    state = AppState(store, settings, owns_store)
    maintenance = Maintenance(store, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(lambda: state.signer)
        await run_in_threadpool(maintenance.run_once)
        maintenance.start()
        state.alerts.start()
        # An ingest batch keeps thousands of parsed objects alive until it is stored, then frees them by reference
        # count: the default threshold (700) ran a collection every few hundred spans, each walking the whole
        # batch for no garbage (~1.5 us of CPU per span). Counted net of frees, 20,000 is passed only when objects
        # really accumulate. Restored on shutdown: the process may outlive the app (tests, embedding).
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], _GC_THRESHOLD), *thresholds[1:])
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            stop_live_streams(app)
            state.alerts.stop()
            maintenance.stop()
            if state.owns_store:
                await run_in_threadpool(state.store.close)

    # /docs is served below from local files; ReDoc is not offered (it injects <style> elements the CSP forbids).
    app = FastAPI(title="AgentWatch collector", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Ingest, store and query LLM agent traces; alerts, breakers and signed reports.")
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.state.agentwatch = state
    app.state.maintenance = maintenance
    for module in (_routes_ingest, _routes_otlp, _routes_query, _routes_alerts, _routes_reports, _routes_crons,
                   _routes_control):
        # The routes are added as they are: include_router() wraps them in a router whose matching rebuilds
        # per-request state, which cost several percent of ingest CPU.
        app.router.routes.extend(module.router.routes)
    app.router.routes.extend([*sessions_router.routes, *live_router.routes])

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> dict[str, Any]:
        """Liveness; needs no API key."""
        current = app_state(request).settings
        return {"status": "ok", "version": app.version, "storage": type(app_state(request).store).__name__,
                "local_mode": current.local_mode, "zero_data_retention": current.zero_data_retention}

    # Uptime monitors that ask with HEAD got 405: FastAPI adds no HEAD to a GET route.
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)

    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    assets = _docs_assets()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        if assets is None:
            return Response("API docs need the fastapi-offline package: pip install 'agentwatch[server]'. The schema "
                            "is at /openapi.json.", media_type="text/plain", status_code=503)
        return FileResponse(STATIC_DIR / "docs.html", media_type="text/html; charset=utf-8")

    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    # Inside the security checks: a caller without credentials is refused before its body's size matters.
    app.add_middleware(BodyLimitMiddleware, own_caps={
        "/api/ingest": settings.max_body_bytes, "/v1/traces": settings.max_body_bytes,
        "/api/reports/verify": _routes_reports.MAX_VERIFY_BYTES})
    app.add_middleware(SecurityMiddleware, api_key=settings.api_key,
                       hosts=served_hosts(settings.host, settings.allowed_hosts),
                       trusted_origins=settings.cors_origins, jwt_secret=settings.jwt_secret)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                           allow_headers=["Content-Type", "Content-Encoding", "X-API-Key", "X-AeneasSoft-API-Key",
                                          "Authorization", "X-AgentWatch-Signature"])
    # Outermost: the checks above see the path the route is found by.
    app.add_middleware(TrailingSlashMiddleware)
    _add_span_schemas(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes (``serve --workers N``): every setting comes from the env."""
    app = create_app(settings=Settings.from_env())
    board = worker_board()
    if board is not None:
        app.add_middleware(ConnectionBalancer, board=board)
    return app
