"""API-key and token checks for ``/api`` (who may do what: ``_auth``), Host and Origin checks against cross-site
writes and DNS rebinding, and defensive headers on every response (pure ASGI: no per-request task)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._auth import API_KEY_PRINCIPAL, LOCAL_PRINCIPAL, PRINCIPAL_KEY, Principal, TokenVerifier, required_roles

__all__ = ["SecurityMiddleware", "API_KEY_HEADERS", "served_hosts"]

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
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CROSS_SITE = frozenset({b"cross-site", b"same-site"})
# Bodies a page on another site can send without a CORS preflight ("simple requests"); no API route takes them.
_SIMPLE_TYPES = frozenset({b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"})
_INGEST_TYPES = frozenset({b"application/json", b"application/gzip", b"application/x-gzip"})
#: What a route that takes no JSON accepts, for its 415: `curl --data-binary @report.pdf` sends a form's type, and
#: "send application/json" sent its user the wrong way.
_ACCEPTED = {"/api/reports/verify": "send the report's bytes as application/pdf (curl --data-binary @report.pdf "
                                    "-H 'Content-Type: application/pdf')"}
#: Headers the checks below decide on, each of which a request carries at most once (RFC 9112 3.2: a second Host
#: is a 400). Read as a dict, a request with two kept only the last, while the routes (Starlette's headers) read
#: the first: "Origin: <another site>" then "Origin: <this collector>" passed the Origin check and killed agents.
_SINGLE_HEADERS = (b"host", b"origin", b"sec-fetch-site", b"content-type")


def served_hosts(host: str, allowed: Iterable[str]) -> frozenset[str] | None:
    """The names a ``Host`` header may carry; None when any is fine ("*", or bound to every interface with no
    ``ALLOWED_HOSTS``: such a collector is meant to be reached under names it cannot know, as Ollama does)."""
    extra = {name.strip().lower().strip("[]") for name in allowed if name.strip()}
    if "*" in extra or (host.strip("[]") in _WILDCARDS and not extra):
        return None
    return frozenset(_LOOPBACK_NAMES | extra | ({host.lower().strip("[]")} - _WILDCARDS))


def _hostname(value: str) -> str:
    """``[::1]:3001`` -> ``::1``; ``Example.com:80`` -> ``example.com``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, api_key: str | None, hosts: frozenset[str] | None = None,
                 trusted_origins: Iterable[str] = (), jwt_secret: str | None = None) -> None:
        self.app = app
        self._key = api_key.encode("utf-8") if api_key else None
        self._tokens = TokenVerifier(jwt_secret) if jwt_secret else None
        self._hosts = hosts
        self._origins = frozenset(origin.rstrip("/").lower() for origin in trusted_origins)

    def _caller(self, scope: Scope) -> Principal | None:
        """The API key's holder, a token's, or None (no or wrong credentials)."""
        for name, value in scope["headers"]:
            if name in API_KEY_HEADERS:
                secret = value
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                secret = value[7:].strip()
            else:
                continue
            if self._key is not None and hmac.compare_digest(secret, self._key):
                return API_KEY_PRINCIPAL
            if self._tokens is not None and secret.count(b".") == 2:
                principal = self._tokens.verify(secret)
                if principal is not None:
                    return principal
        return None

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        """Why this request is refused before it reaches a route, if it is."""
        headers = dict(scope["headers"])
        if len(headers) < len(scope["headers"]):
            names = [name for name, _ in scope["headers"]]
            for name in _SINGLE_HEADERS:
                if names.count(name) > 1:
                    return 400, (f"more than one {name.decode()} header; send it once (which one a check reads and "
                                 "which one the route reads could differ)")
        host = headers.get(b"host", b"").decode("latin-1")
        if self._hosts is not None and host and _hostname(host) not in self._hosts:
            # A page whose DNS name was rebound to this machine sends its own name here.
            return 400, (f"Host {_hostname(host)!r} is not served here; add it to ALLOWED_HOSTS to reach the "
                         "collector under that name")
        if scope["method"] in _SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1").rstrip("/").lower()
            same = text.partition("://")[2] == host.lower() and bool(host)
            if not same and text not in self._origins and "*" not in self._origins:
                return 403, (f"cross-origin request from {text!r} refused; list the origin in CORS_ORIGINS to "
                             "allow it")
        elif "*" not in self._origins and (site := headers.get(b"sec-fetch-site", b"").lower()) in _CROSS_SITE:
            # A browser says where the request came from, but not which origin (a client that strips Origin, or a
            # browser that sends none): no origin can be checked against CORS_ORIGINS, so none is trusted unless
            # any origin is (CORS_ORIGINS=*).
            where = site.decode("latin-1")
            return 403, (f"{where} request without an Origin header refused (Sec-Fetch-Site: {where}); send its "
                         "Origin, or set CORS_ORIGINS=* to allow requests from any origin")
        content_type = headers.get(b"content-type")
        if content_type is not None and scope["path"].startswith("/api"):
            media = _media_type(content_type)
            if media in _SIMPLE_TYPES or (scope["path"] == "/api/ingest" and media not in _INGEST_TYPES
                                          and not media.endswith(b"+json")):
                return 415, f"Content-Type {media.decode('latin-1')!r} is not accepted here; " + _ACCEPTED.get(
                    scope["path"], "send application/json (gzip'd with Content-Encoding: gzip, if you like)")
        return None

    async def _refuse(self, send: Send, status: int, detail: str, *extra: tuple[bytes, bytes]) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra,
            *_HEADERS]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await self._refuse(send, *refusal)
            return
        path = scope["path"]
        if (self._key is None and self._tokens is None) or not path.startswith(("/api", "/v1/")):
            scope.setdefault("state", {})[PRINCIPAL_KEY] = LOCAL_PRINCIPAL
        elif scope["method"] != "OPTIONS":
            caller = self._caller(scope)
            if caller is None:
                await self._refuse(send, 401, "missing or wrong API key or token (send it in the X-API-Key "
                                              "header or as Authorization: Bearer)",
                                   (b"www-authenticate", b'ApiKey header="X-API-Key"'))
                return
            if caller.role != "admin" and caller.role not in required_roles(scope["method"], path):
                await self._refuse(send, 403, f"a {caller.role} token may not {scope['method']} {path}")
                return
            scope.setdefault("state", {})[PRINCIPAL_KEY] = caller

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in _HEADERS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
