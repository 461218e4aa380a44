"""Who may call what: the all-powers ``API_KEY`` and role-scoped JWT bearer tokens signed with ``JWT_SECRET``.

Roles: ``viewer`` reads; ``operator`` reads, controls running agents (pause, resume, override, kill, limits)
and edits alert rules and crons; ``ingest`` only sends spans, SDK alerts and reads the control feed the SDK
polls. A token goes in ``Authorization: Bearer`` or in the ``X-API-Key`` header (the dashboard's prompt).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import uuid
from typing import Final, Literal

__all__ = ["ROLES", "Principal", "API_KEY_PRINCIPAL", "LOCAL_PRINCIPAL", "create_token", "TokenVerifier",
           "required_roles", "CONTROL_FEED_PATH", "PRINCIPAL_KEY"]

Role = Literal["admin", "operator", "viewer", "ingest"]
ROLES: Final = ("viewer", "operator", "ingest")
_ALGORITHM: Final = "HS256"
#: Where the middleware leaves the caller for the routes (``request.state``).
PRINCIPAL_KEY: Final = "agentwatch_principal"
#: What the SDK polls for operator control; an ingest token may read it.
CONTROL_FEED_PATH: Final = "/api/control"

_INGEST_PATHS: Final = frozenset({"/api/ingest", "/v1/traces", "/api/alerts/sdk-alert", "/api/api/alerts/sdk-alert"})
_SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: POSTs that only read (checking a report's signature).
_READ_POSTS: Final = frozenset({"/api/reports/verify"})


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``name`` is what audit records show (the token's name, "api-key" or "local")."""

    name: str
    role: Role


API_KEY_PRINCIPAL: Final = Principal("api-key", "admin")
LOCAL_PRINCIPAL: Final = Principal("local", "admin")


#: The longest expiry a token may be given (100 years); longer is what leaving it out means.
MAX_TOKEN_SECONDS: Final = 36500 * 86400


def create_token(secret: str, role: str, name: str, *, expires_in_seconds: float | None = None) -> str:
    """A signed bearer token for ``name`` with ``role``; no expiry unless ``expires_in_seconds`` is given."""
    import jwt

    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name or len(name) > 200:
        raise ValueError("name must be 1 to 200 characters")
    if not secret:
        raise ValueError("JWT_SECRET is not set")
    if expires_in_seconds is not None and not (math.isfinite(expires_in_seconds)
                                               and 1 <= expires_in_seconds <= MAX_TOKEN_SECONDS):
        # A token expired when it is made is of no use; past 100 years, leave the expiry out.
        raise ValueError(f"a token must expire between 1 second and {MAX_TOKEN_SECONDS // 86400} days after it "
                         f"is made (or never), got {expires_in_seconds!r} seconds")
    now = int(time.time())
    claims: dict[str, object] = {"sub": name, "role": role, "iat": now, "jti": uuid.uuid4().hex}
    if expires_in_seconds is not None:
        claims["exp"] = now + int(expires_in_seconds)
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


class TokenVerifier:
    """Checks bearer tokens; verified ones are remembered (until they expire) so ingest pays for one check."""

    _CACHE_SIZE: Final = 1024

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def verify(self, token: bytes) -> Principal | None:
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        import jwt

        try:
            claims = jwt.decode(token.decode("ascii"), self._secret, algorithms=[_ALGORITHM],
                                options={"require": ["sub", "role"]})
        except (jwt.PyJWTError, UnicodeDecodeError):
            return None
        role, name = claims.get("role"), claims.get("sub")
        if role not in ROLES or not isinstance(name, str):
            return None
        principal = Principal(name, role)
        expires = float(claims.get("exp") or now + 3600)
        with self._lock:
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = (principal, min(expires, now + 3600))
        return principal


def required_roles(method: str, path: str) -> frozenset[str]:
    """The roles (besides the API key, which may do anything) allowed to make this request."""
    if path in _INGEST_PATHS and method == "POST":
        return frozenset({"ingest"})
    if path == CONTROL_FEED_PATH:
        # Reading the control state is reading; POSTing is a process reporting its breakers, which a viewer
        # is not (it would put made-up processes and breakers on the dashboard).
        return frozenset({"ingest", "viewer", "operator"} if method in _SAFE else {"ingest", "operator"})
    if method in _SAFE or path in _READ_POSTS:
        return frozenset({"viewer", "operator"})
    return frozenset({"operator"})
