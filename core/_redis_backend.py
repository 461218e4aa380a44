"""The Redis connection behind fleet-wide limits: one client per URL and process, with its health.

Socket timeouts are ``SOCKET_TIMEOUT_S`` and the client never retries by itself: one failed round trip makes
the backend *down*, and the window store falls back (``limits_fallback``) at once. While down, a single caller
tries again after a backoff (``BACKOFF_MIN_S`` doubling to ``BACKOFF_MAX_S``); one warning is logged per
outage and one when Redis is back.

What must reach Redis although it failed to answer (a hard budget's settlement or release, the release of the probe
slot: without it a finished call's reservation stays held for ``RESERVATION_TTL_S`` and refuses later calls) is kept
(``defer``, at most ``MAX_DEFERRED``, the oldest dropped first) and sent when Redis answers again: by the caller that
reconnects, before its own round trip, in batches of ``REPLAY_BATCH`` (one pipelined round trip each).

A reservation in Redis expires (``RESERVATION_TTL_S``) so that a process that died does not hold the fleet's budget
for ever; the reservations of this process's calls still in flight are renewed (``hold``, ``renew``: one pipelined
round trip for all of them, by the export worker when idle, well before they expire), so a call that runs longer
than the lifetime (a long reasoning call, a long stream) keeps its money held. A process that SIGTERM's default action
is about to kill releases them first (``release_held``, called by ``_signals``): its calls will never settle. So it
does with the HALF_OPEN probe slots its calls hold (``hold_probe``), which would otherwise block the fleet's calls
until they expire.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any, Final

from . import _redis_scripts as scripts
from ._forking import after_fork_in_child, fork_safe_lock
from ._safe import logger

__all__ = ["RedisBackend", "backend_for", "backends", "SOCKET_TIMEOUT_S", "BACKOFF_MIN_S", "BACKOFF_MAX_S",
           "MAX_DEFERRED", "REPLAY_BATCH"]

#: Connect and read timeout: the worst case one LLM call can be delayed by an unreachable Redis.
SOCKET_TIMEOUT_S: Final = 0.05
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
#: Operations kept for Redis while it does not answer (a few hundred bytes each): beyond, the oldest are dropped
#: (their reservations then expire after ``RESERVATION_TTL_S``).
MAX_DEFERRED: Final = 10_000
#: Kept operations sent per round trip once Redis answers again.
REPLAY_BATCH: Final = 64

#: A kept operation: the script, its KEYS, its ARGV, and its ARGV for a resend after a round trip that may have run.
_Deferred = tuple[Any, list[Any], list[Any], list[Any]]


class RedisBackend:
    """One Redis connection pool per URL and process, with its health: up, or down until a retry is due."""

    def __init__(self, url: str) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # a deploy error: say which extra fixes it
            raise ImportError(
                "limits_backend=redis://... needs the redis package: pip install 'agentwatch[redis]'") from exc
        self.url = url
        # No client-side retries: one failed round trip means fail-open now, not 3 more timeouts.
        settings: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": SOCKET_TIMEOUT_S,
                                    "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
        self.client = redis.Redis.from_url(url, **settings)
        self._settings = settings
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        register = self.client.register_script
        self.admit = register(scripts.ADMIT)
        self.publish = register(scripts.PUBLISH)
        self.release = register(scripts.RELEASE)
        self.record = register(scripts.RECORD)
        self.count = register(scripts.COUNT)
        self.uncount = register(scripts.UNCOUNT)
        self.read = register(scripts.READ)
        self.clear = register(scripts.CLEAR)
        self.set_budget = register(scripts.SET_BUDGET)
        self.increase = register(scripts.INCREASE)
        self.reserve = register(scripts.RESERVE)
        self.unreserve = register(scripts.UNRESERVE)
        self.settle_reserved = register(scripts.SETTLE_RESERVED)
        self.renew_script = register(scripts.RENEW)
        self.reserved = register(scripts.RESERVED)
        self.reconcile = register(scripts.RECONCILE)
        self.down = False
        #: Outages so far: a store that has not caught up with the latest reconciles before its next admission.
        self.outages = 0
        self._lock = fork_safe_lock(self)  # a forked child gets a new one: the thread holding it is not there
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN_S
        self._probing = False
        self._deferred: deque[_Deferred] = deque()
        #: Per store (its key tag): spend recorded here that Redis did not take, added back after the outage.
        self._missed: dict[str, int] = {}
        self._dropped = 0
        self._blocking = False  # the fallback of the stores that kept operations: for the outage warning
        #: Reservations of this process's calls in flight, to renew: (zset key, hash key) -> {id: units held}.
        self._live: dict[tuple[str, str], dict[str, int]] = {}
        #: HALF_OPEN probe slots a call of this process holds: slot key -> the holder's token.
        self._probes: dict[str, str] = {}
        self._renewed_at = time.monotonic()

    def hold_probe(self, key: str, token: str) -> None:
        """A call of this process took the fleet's probe slot ``key`` (as ``token``)."""
        with self._lock:
            self._probes[key] = token

    def unhold_probe(self, key: str) -> None:
        """The probe slot ``key`` was released, or a published transition freed it."""
        with self._lock:
            self._probes.pop(key, None)

    def hold(self, keys: list[str], member: str, units: int) -> None:
        """A call of this process reserved ``units`` more under ``member``: renew it while it is held."""
        with self._lock:
            held = self._live.setdefault((keys[0], keys[1]), {})
            held[member] = held.get(member, 0) + units

    def unhold(self, keys: list[str], member: str, units: int | None = None) -> None:
        """``units`` of ``member`` were released (all of them: settled, or ``None``)."""
        with self._lock:
            held = self._live.get((keys[0], keys[1]))
            if held is None or member not in held:
                return
            left = held[member] - units if units is not None else 0
            if left > 0:
                held[member] = left
            else:
                del held[member]
                if not held:
                    del self._live[(keys[0], keys[1])]

    def release_held(self) -> int:
        """Release the reservations and probe slots of this process's calls in flight: SIGTERM's default action is
        about to kill it, so they would never settle and would refuse the fleet's calls until they expire. One
        pipelined round trip, on a connection of its own: the signal may have stopped a thread of this process inside
        the connection pool's lock. How many were released (0: none held, or Redis did not answer: they expire by
        themselves)."""
        with self._lock:
            live = [(keys, dict(held)) for keys, held in self._live.items() if held]
            self._live.clear()
            probes = list(self._probes.items())
            self._probes.clear()
        if not live and not probes:
            return 0
        import redis

        released = sum(len(held) for _, held in live) + len(probes)
        client = redis.Redis.from_url(self.url, **self._settings)  # its own pool: its own lock
        try:
            pipe = client.pipeline(transaction=False)
            for keys, held in live:
                for member, units in held.items():
                    self.unreserve(keys=list(keys), args=[units, member], client=pipe)
            for key, token in probes:
                self.release(keys=[key], args=[token], client=pipe)  # only if it is still this process's
            pipe.execute(raise_on_error=False)
        except self.errors as exc:
            logger.debug("agentwatch: could not release the reservations of calls in flight: %s", exc)
            return 0
        finally:
            client.close()
        return released

    def lock_free(self, timeout: float) -> bool:
        """Whether this backend's lock can be taken within ``timeout`` (a signal handler asks: the thread it
        interrupted may hold it)."""
        if not self._lock.acquire(timeout=timeout):
            return False
        self._lock.release()
        return True

    def renew(self, lifetime_s: float, every_s: float) -> int:
        """Give the reservations this process holds ``lifetime_s`` more from now, if ``every_s`` has passed since the
        last renewal: one pipelined round trip. How many scopes were renewed (0: none due, none held, or Redis away:
        tried again on the next call)."""
        now = time.monotonic()
        if now - self._renewed_at < every_s:
            return 0
        with self._lock:
            live = [(keys, list(held)) for keys, held in self._live.items() if held]
        if not live:
            self._renewed_at = now
            return 0
        if self.down and not self.usable():
            return 0
        try:
            pipe = self.client.pipeline(transaction=False)
            for keys, members in live:
                self.renew_script(keys=list(keys), args=[repr(lifetime_s), *members], client=pipe)
            pipe.execute(raise_on_error=False)
        except self.errors as exc:
            self.failed(exc, self._blocking)
            return 0
        self._renewed_at = now
        if self.down:
            self.succeeded()
        return len(live)

    def usable(self) -> bool:
        """True if a round trip should be tried now: Redis is up, or this caller makes the reconnect attempt (which
        first sends what was kept for Redis: False if that failed)."""
        if not self.down:
            return True
        with self._lock:
            if self._probing or time.monotonic() < self._retry_at:
                return False
            self._probing = True
        return self.replay()

    def succeeded(self) -> None:
        if self.down:
            with self._lock:
                if not self.down:
                    return
                self.down = False
                self._probing = False
                self._backoff = BACKOFF_MIN_S
                logger.warning("agentwatch: limits backend %s reachable again; fleet-wide limits resumed",
                               _redact(self.url))
            if self._deferred:  # kept by a caller that failed while this one reconnected
                self.replay()

    def miss(self, store: str, units: int) -> None:
        """Spend of ``store`` recorded in this process that did not reach Redis (an outage): its next admission adds
        it to the fleet's window first (``RedisWindowStore``'s reconciliation)."""
        if units > 0:
            with self._lock:
                self._missed[store] = self._missed.get(store, 0) + units

    def take_missed(self, store: str) -> int:
        with self._lock:
            return self._missed.pop(store, 0)

    def defer(self, script: Any, keys: list[Any], args: list[Any], resend: list[Any], blocking: bool) -> None:
        """Keep an operation that did not reach Redis, to send when it answers again. ``args`` are sent if it was
        never sent; ``resend`` replaces them once a round trip carrying it failed (Redis may have run it)."""
        with self._lock:
            self._blocking = blocking
            self._deferred.append((script, keys, args, resend))
            if len(self._deferred) > MAX_DEFERRED:
                self._drop_oldest_locked()

    def deferred(self) -> int:
        """How many operations are kept for Redis."""
        return len(self._deferred)

    def replay(self) -> bool:
        """Send what was kept for Redis, oldest first; False (and down) if Redis did not answer."""
        while self._deferred:
            with self._lock:
                batch = [self._deferred.popleft() for _ in range(min(REPLAY_BATCH, len(self._deferred)))]
            if not batch:
                break
            try:
                pipe = self.client.pipeline(transaction=False)
                for script, keys, args, _ in batch:
                    script(keys=keys, args=args, client=pipe)
                # A script's own error (not Redis being away) is not retried: it would fail again.
                pipe.execute(raise_on_error=False)
            except self.errors as exc:
                with self._lock:
                    self._deferred.extendleft((script, keys, resend, resend)
                                              for script, keys, _, resend in reversed(batch))
                    while len(self._deferred) > MAX_DEFERRED:
                        self._drop_oldest_locked()
                self.failed(exc, self._blocking)
                return False
        return True

    def _drop_oldest_locked(self) -> None:
        self._deferred.popleft()
        self._dropped += 1
        if self._dropped == 1:
            logger.warning("agentwatch: limits backend %s unreachable for long: more than %d settlements kept for "
                           "it; the oldest are dropped (their reservations expire by themselves)",
                           _redact(self.url), MAX_DEFERRED)

    def failed(self, exc: BaseException, blocking: bool = False) -> None:
        with self._lock:
            self._probing = False
            if not self.down:
                self.down = True
                self.outages += 1
                self._backoff = BACKOFF_MIN_S
                consequence = ("blocking every LLM call (limits_fallback='block')" if blocking
                               else "enforcing limits per process")
                logger.warning("agentwatch: limits backend %s unreachable (%s: %s); %s until it is back",
                               _redact(self.url), type(exc).__name__, exc, consequence)
            else:
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
                logger.debug("agentwatch: limits backend still unreachable: %s", exc)
            self._retry_at = time.monotonic() + self._backoff


#: What the names of URL query parameters that carry credentials contain (``password``, ``username``, and the
#: others redis-py passes on: ``ssl_password``, a sentinel's or a proxy's).
_SECRET_PARAMS: Final = ("password", "username")


def _redact(url: str) -> str:
    # redis://user:password@host -> redis://***@host, ?password=... -> ?password=***: warnings end up in logs.
    head, mark, query = url.partition("?")
    scheme, sep, rest = head.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    if query:
        query = "&".join(_redact_param(param) for param in query.split("&"))
    return scheme + sep + rest + mark + query


def _redact_param(param: str) -> str:
    name, equals, _ = param.partition("=")
    secret = any(part in name.lower() for part in _SECRET_PARAMS)
    return f"{name}=***" if equals and secret else param


_backends: dict[str, RedisBackend] = {}
_backends_lock = fork_safe_lock(sys.modules[__name__], "_backends_lock")


def _reset_in_child() -> None:
    """After a fork: a reconnect attempt the parent had in flight is not this child's (the child makes its own), and
    the operations the parent kept for Redis are the parent's to send."""
    for backend in list(_backends.values()):
        backend._probing = False
        backend._deferred.clear()
        backend._live.clear()  # the parent's calls, not the child's
        backend._probes.clear()


after_fork_in_child(_reset_in_child)


def backends() -> list[RedisBackend]:
    """The process's backends."""
    with _backends_lock:
        return list(_backends.values())


def backend_for(url: str) -> RedisBackend:
    """The process's backend for ``url`` (created once; connecting happens on first use, not here)."""
    with _backends_lock:
        backend = _backends.get(url)
        if backend is None:
            backend = _backends[url] = RedisBackend(url)
        return backend
