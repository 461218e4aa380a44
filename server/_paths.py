"""One URL per API route, whatever trailing slash a client adds (pure ASGI, outermost: every check sees the path the
route is found by)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TrailingSlashMiddleware"]

_API_PREFIXES = ("/api/", "/v1/")


class TrailingSlashMiddleware:
    """``/api/ingest/`` is ``/api/ingest``. Starlette answered such a path with a 307 redirect, which an exporter
    does not follow with its POST (``proxy_url=".../api/ingest/"``: every batch refused, its spans dropped), and
    the checks before the router (the body cap of ingest, an ingest token's routes) judged it as another route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.endswith("/") and path.startswith(_API_PREFIXES) and len(path) > 5:
                scope = {**scope, "path": path.rstrip("/") or "/"}
                raw = scope.get("raw_path")
                if isinstance(raw, bytes) and raw.endswith(b"/"):
                    scope["raw_path"] = raw.rstrip(b"/")
        await self.app(scope, receive, send)
