"""API-key check for ``/api`` and defensive headers on every response (pure ASGI: no per-request task)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityMiddleware", "API_KEY_HEADERS"]

API_KEY_HEADERS = (b"x-api-key", b"x-aeneassoft-api-key")

# The dashboard needs nothing from elsewhere: no inline script, no third-party origin, no framing.
_CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", _CSP),
]


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self._key = api_key.encode("utf-8") if api_key else None

    def _authorized(self, scope: Scope) -> bool:
        assert self._key is not None
        for name, value in scope["headers"]:
            if name in API_KEY_HEADERS and hmac.compare_digest(value, self._key):
                return True
            if name == b"authorization" and value[:7].lower() == b"bearer " \
                    and hmac.compare_digest(value[7:].strip(), self._key):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._key is not None and scope["path"].startswith(("/api", "/v1/")) and scope["method"] != "OPTIONS" \
                and not self._authorized(scope):
            body = json.dumps({"detail": "missing or wrong API key (send it in the X-API-Key header)"}).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'ApiKey header="X-API-Key"'), *_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in _HEADERS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
