"""Fleet-wide rolling windows in Redis: one budget, one error rate, one call rate for N processes.

Every operation is one Lua script (one round trip, atomic on the server). The scripts read the clock with
Redis ``TIME``, so all machines judge the windows by the same clock; the monotonic ``now`` that monitors
pass is only used by the local fallback. Windows are bucketed like ``LocalWindowStore`` (3600 buckets per
window, each entry leaves at most one bucket width early) as a sorted set of bucket ids plus a hash of
bucket values and running totals: evaluation is O(1) amortised, eviction O(expired buckets). Every key
expires with its window, so an idle scope leaves nothing behind.

What is shared (fleet-wide) and what stays in the process:

* shared: the three windows (spend, outcomes, calls); the effective hourly budget (``increase_budget``
  anywhere raises it for everyone; ``reset_windows`` anywhere clears the windows for everyone); and the
  breaker state: one record per scope (state, pause end on the Redis clock, the trip, a generation that
  every published transition renews) plus the HALF_OPEN probe slot (``SET NX`` with an expiry).
* per process: alerts and their cool-down, hooks, the reports of transitions (each process's sink reports
  what its monitor does, a followed transition marked ``fleet_sync``), and the error-rate and call-rate
  *limits* (each process checks the shared windows against its own configured values; configure the
  fleet alike).

The breaker state: each monitor mirrors the shared record and passes the generation it mirrors with every
check. The admission script reads the record in the same round trip as the windows: while it is CLOSED
and unchanged the reply is the windows' verdict, as before; otherwise it is the whole record (blocked by
OPEN or PAUSED; HALF_OPEN once the pause has ended by Redis ``TIME``, where the first admission fleet-wide
to ``SET NX`` the probe key is the probe and every other is blocked), and the monitor follows it. A
monitor that is not CLOSED asks for the record on every call, so recovery anywhere reaches it on its next
call. Transitions are published by a second script: a trip, a retrip and a recovery only if the record is
still the generation the monitor acted on (and, after a probe, if it still holds the probe slot), so a
stale decision loses to a newer one; ``pause``, ``increase_budget`` and ``reset_windows`` always win.
A probe whose process dies frees the slot after ``PROBE_TTL_S``. The record is refreshed while it is not
CLOSED and expires after a day without calls (then the scope is CLOSED); generations are Redis
microseconds, so one never comes back after an expiry.

The budget: the first ``set_limits`` of a store *joins*: if the fleet's configured budget equals ours, the
shared effective budget (possibly raised by ``increase_budget``) is kept; otherwise ours replaces it (a new
deploy with a new budget wins). Later changes (``Monitor.update``) set it for the fleet. ``increase_budget``
adds its amount to the shared budget, so two processes raising by $5 each raise it by $10. The breaker
reports ``increase_budget`` to the store as ``spend()`` immediately followed by ``set_limits()`` under the
monitor lock; nothing else makes that sequence, which is how it is told apart from an ``update``.
A new budget does not close a tripped scope (as ``Monitor.update`` does not locally): a process that
starts while the fleet is OPEN is OPEN, whatever its configuration, until someone recovers the scope.

When Redis fails (socket timeouts are 50 ms, no client-side retries), ``limits_fallback`` decides.
``"local"`` (default): the store fails open to a ``LocalWindowStore`` that has shadowed this process's own
calls all along: limits keep being enforced, per process, from this process's recent history, and the
monitor's state machine runs per process. ``"block"``: fail closed, every call is blocked
(``LIMITS_BACKEND_UNREACHABLE``) until Redis answers again. Either way one warning is logged per outage;
reconnection is attempted by a single caller after a backoff (0.5 s doubling to 30 s) and logged when it
succeeds. Nothing recorded locally during an outage is copied back to Redis: a transition made during it
stays local, and the next reply from Redis is followed whatever it is.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Final

from ._safe import logger
from ._windows import (
    BUCKETS_PER_WINDOW,
    BUDGET_PER_HOUR,
    CALLS_WINDOW_S,
    ERROR_RATE_MIN_CALLS,
    ERROR_WINDOW_S,
    FLEET_VERDICT,
    HARD_BUDGET,
    MAX_CALLS_PER_MINUTE,
    MAX_ERROR_RATE,
    PROBE_GRANTED,
    SPEND_WINDOW_S,
    UNREACHABLE_VERDICT,
    LocalWindowStore,
    SharedState,
    Violation,
    units_to_usd,
    usd_to_units,
)

__all__ = ["RedisBackend", "RedisWindowStore", "backend_for", "SOCKET_TIMEOUT_S", "KEY_PREFIX", "PROBE_TTL_S",
           "FALLBACKS", "RESERVATION_TTL_S"]

#: Connect and read timeout: the worst case one LLM call can be delayed by an unreachable Redis.
SOCKET_TIMEOUT_S: Final = 0.05
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
KEY_PREFIX: Final = "agentwatch"
#: The shared budget outlives the windows: a raise must survive a quiet hour. Refreshed on every check.
_LIMIT_TTL_MS: Final = 24 * 3600 * 1000
_NO_BUDGET: Final = "none"
#: How long the fleet's probe slot stays taken if its call never settles (its process died): longer than
#: almost any single LLM call, short enough that a lost probe does not hold the fleet back for long.
PROBE_TTL_S: Final = 120.0
#: How long a hard budget's reservation is held if its call never settles (its process died): longer than
#: almost any single LLM call, stream included.
RESERVATION_TTL_S: Final = 900.0
#: ``limits_fallback`` values: enforce per process from the shadow windows, or block every call.
FALLBACKS: Final = ("local", "block")

# The shared breaker record's states (HALF_OPEN is never stored: it is PAUSED after the pause end).
_STATES: Final = {b"C": "CLOSED", b"O": "OPEN", b"P": "PAUSED", b"H": "HALF_OPEN"}
_CODES: Final = {"CLOSED": "C", "OPEN": "O", "PAUSED": "P"}

# KEYS: 1 spend zset, 2 spend hash, 3 outcome zset, 4 outcome hash, 5 calls zset, 6 calls hash, 7 limits.
# Hash fields: running totals "t" (spend, calls), "tc"/"te" (completed, errors); bucket values "b<id>",
# "c<id>"/"e<id>". Integers go through HINCRBY as strings: Lua numbers are doubles, pico-dollars are not.
_PRELUDE: Final = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local SW, EW, CW = {SPEND_WINDOW_S!r}, {ERROR_WINDOW_S!r}, {CALLS_WINDOW_S!r}
local SB, EB, CB = SW / {BUCKETS_PER_WINDOW}, EW / {BUCKETS_PER_WINDOW}, CW / {BUCKETS_PER_WINDOW}

local function evict(z, h, cutoff, fields)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
  if #old == 0 then return end
  for _, b in ipairs(old) do
    for i = 1, #fields, 2 do
      local v = redis.call('HGET', h, fields[i] .. b)
      if v then
        if v ~= '0' then redis.call('HINCRBY', h, fields[i + 1], '-' .. v) end
        redis.call('HDEL', h, fields[i] .. b)
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff)
end

local function bucket(width) return tostring(math.floor(now / width)) end
local function cutoff(window, width) return math.floor((now - window) / width) end

local function add(z, h, width, window, prefix, total, amount)
  local b = bucket(width)
  redis.call('ZADD', z, 'NX', b, b)
  redis.call('HINCRBY', h, prefix .. b, amount)
  redis.call('HINCRBY', h, total, amount)
  local ms = math.floor(window * 1000) + 1000
  redis.call('PEXPIRE', z, ms)
  redis.call('PEXPIRE', h, ms)
end

local function evict_spend() evict(KEYS[1], KEYS[2], cutoff(SW, SB), {{'b', 't'}}) end
local function evict_done() evict(KEYS[3], KEYS[4], cutoff(EW, EB), {{'c', 'tc', 'e', 'te'}}) end
local function evict_calls() evict(KEYS[5], KEYS[6], cutoff(CW, CB), {{'b', 't'}}) end
local function num(h, f) return tonumber(redis.call('HGET', h, f) or '0') end
"""

# The windows' verdict, as (code, a, b): 0 admitted; 1 budget (budget, spend); 2 error rate (completed,
# errors); 3 call rate (calls). ARGV 2-4: this process's budget in units ('' = none), max error rate (''),
# max calls (''). ``count`` is an admission: call N+1 of a limit N violates, an admitted call is counted.
_CHECK: Final = f"""
local function check(count)
  evict_spend(); evict_done(); evict_calls()
  local budget = ARGV[2]
  local shared = redis.call('HGET', KEYS[7], 'eff')
  if shared then
    budget = shared
    redis.call('PEXPIRE', KEYS[7], {_LIMIT_TTL_MS})
  end
  if budget ~= '' and budget ~= '{_NO_BUDGET}' then
    local spent = redis.call('HGET', KEYS[2], 't') or '0'
    if tonumber(spent) >= tonumber(budget) then return 1, budget, spent end
  end
  local done = num(KEYS[4], 'tc')
  if ARGV[3] ~= '' and done >= {ERROR_RATE_MIN_CALLS} then
    local errors = num(KEYS[4], 'te')
    if errors > tonumber(ARGV[3]) * done then return 2, done, errors end
  end
  local calls = num(KEYS[6], 't')
  if count then
    if ARGV[4] ~= '' and calls >= tonumber(ARGV[4]) then return 3, calls + 1, false end
    add(KEYS[5], KEYS[6], CB, CW, 'b', 't', 1)
  elseif ARGV[4] ~= '' and calls > tonumber(ARGV[4]) then
    return 3, calls, false
  end
  return 0, false, false
end
"""

# KEYS 8: the breaker record (hash: g generation, st C/O/P, pu pause end in Redis seconds, ev/r/th/cu the
# transition that made it, tr/tt/tc the trip); 9: the probe slot (string: the holder's token, with expiry).
# ARGV 1: '1' admission, '0' check, '2' the windows only (settling a probe); 5: the generation this process
# mirrors; 6: this store's probe token; 7: the probe slot's expiry in ms.
# Replies: {code, a, b} (the record is CLOSED and still that generation: the common case, or mode '2'), or
# {code, a, b, generation, state C/O/P/H, pause ms left, probe 0/1/2, ev, r, th, cu, tr, tt, tc} where code 4
# means blocked by the state (the windows were not looked at) and probe is PROBE_NONE/HELD/GRANTED.
_ADMIT: Final = _PRELUDE + _CHECK + f"""
local mode = ARGV[1]
if mode == '2' then
  local code, a, b = check(false)
  return {{code, a, b}}
end
local head = redis.call('HMGET', KEYS[8], 'g', 'st')
local g, st = head[1] or '0', head[2] or 'C'
if st == 'C' and g == ARGV[5] then
  local code, a, b = check(mode == '1')
  return {{code, a, b}}
end
local rec = redis.call('HMGET', KEYS[8], 'pu', 'ev', 'r', 'th', 'cu', 'tr', 'tt', 'tc')
local code, a, b, probe, left = 4, false, false, 0, 0
if st == 'C' then
  code, a, b = check(mode == '1')
else
  if st == 'P' then
    left = (tonumber(rec[1]) or 0) - now
    if left <= 0 then st, left = 'H', 0 end
  end
  if st == 'H' then
    if mode == '1' then
      if redis.call('SET', KEYS[9], ARGV[6], 'NX', 'PX', ARGV[7]) then
        probe = 2
        code, a, b = check(true)
      else
        probe = 1
      end
    elseif redis.call('EXISTS', KEYS[9]) == 1 then
      probe = 1
    else
      code = 0
    end
  end
  redis.call('PEXPIRE', KEYS[8], {_LIMIT_TTL_MS})
end
return {{code, a, b, g, st, math.ceil(left * 1000), probe, rec[2] or false, rec[3] or false, rec[4] or false,
        rec[5] or false, rec[6] or false, rec[7] or false, rec[8] or false}}
"""

# KEYS: 1 the breaker record, 2 the probe slot. ARGV 1: the generation that must still be current ('' = no
# condition); 2: the token that must hold the probe slot ('' = none); 3: state C/O/P; 4-7: event, reason,
# threshold, current; 8-10: the trip; 11: pause seconds. Returns {1, new generation} or {0} (a condition
# failed: the fleet moved on). Generations only grow, also across an expiry of the record: Redis TIME in us.
_PUBLISH: Final = f"""
local g = redis.call('HGET', KEYS[1], 'g') or '0'
if (ARGV[1] ~= '' and ARGV[1] ~= g) or (ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2]) then
  return {{0}}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ng = string.format('%.0f', math.max((tonumber(g) or 0) + 1, tonumber(t[1]) * 1000000 + tonumber(t[2])))
redis.call('HSET', KEYS[1], 'g', ng, 'st', ARGV[3], 'ev', ARGV[4], 'r', ARGV[5], 'th', ARGV[6], 'cu', ARGV[7],
           'tr', ARGV[8], 'tt', ARGV[9], 'tc', ARGV[10], 'pu', string.format('%.6f', now + tonumber(ARGV[11])))
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], {_LIMIT_TTL_MS})
return {{1, ng}}
"""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# ARGV: cost in units, error (0/1).
_RECORD_BODY: Final = """
evict_spend(); evict_done()
if ARGV[1] ~= '0' then add(KEYS[1], KEYS[2], SB, SW, 'b', 't', ARGV[1]) end
add(KEYS[3], KEYS[4], EB, EW, 'c', 'tc', 1)
if ARGV[2] == '1' then
  redis.call('HINCRBY', KEYS[4], 'e' .. bucket(EB), 1)
  redis.call('HINCRBY', KEYS[4], 'te', 1)
end
"""
_RECORD: Final = _PRELUDE + _RECORD_BODY + """
return 1
"""

_COUNT: Final = _PRELUDE + """
evict_calls()
add(KEYS[5], KEYS[6], CB, CW, 'b', 't', 1)
return 1
"""

_UNCOUNT: Final = _PRELUDE + """
evict_calls()
local newest = redis.call('ZREVRANGE', KEYS[5], 0, 0)
if #newest == 0 then return 0 end
local b = newest[1]
local left = redis.call('HINCRBY', KEYS[6], 'b' .. b, -1)
redis.call('HINCRBY', KEYS[6], 't', -1)
if left <= 0 then
  redis.call('HDEL', KEYS[6], 'b' .. b)
  redis.call('ZREM', KEYS[5], b)
end
return 1
"""

# Returns {spend units, completed, errors, calls, shared budget or false}.
_READ: Final = _PRELUDE + """
evict_spend(); evict_done(); evict_calls()
return {redis.call('HGET', KEYS[2], 't') or '0', num(KEYS[4], 'tc'), num(KEYS[4], 'te'), num(KEYS[6], 't'),
        redis.call('HGET', KEYS[7], 'eff')}
"""

# Hard budgets. KEYS: 1 spend zset, 2 spend hash, 3 limits, 4 reservation zset (id -> expiry, Redis seconds),
# 5 reservation hash (id -> units, "t" -> total). ARGV: 1 this process's budget in units ('' none), 2 units to
# reserve, 3 reservation id, 4 its lifetime in seconds. Reservations of a process that died expire. Returns
# {0} (reserved) or {1, budget, spend + reserved} (does not fit). Sums as integers (HINCRBY), compared as
# doubles: exact below 2**53 units ($9,007).
_RESERVE: Final = _PRELUDE + f"""
evict_spend()
local budget = ARGV[1]
local shared = redis.call('HGET', KEYS[3], 'eff')
if shared then budget = shared end
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, id in ipairs(old) do
  local v = redis.call('HGET', KEYS[5], id)
  if v then
    redis.call('HINCRBY', KEYS[5], 't', '-' .. v)
    redis.call('HDEL', KEYS[5], id)
  end
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) end
if budget == '' or budget == '{_NO_BUDGET}' then return {{0}} end
local committed = tonumber(redis.call('HGET', KEYS[2], 't') or '0') + tonumber(redis.call('HGET', KEYS[5], 't') or '0')
local limit = tonumber(budget)
if committed + tonumber(ARGV[2]) > limit or committed >= limit then
  return {{1, budget, string.format('%.0f', committed)}}
end
if ARGV[2] ~= '0' then
  redis.call('HINCRBY', KEYS[5], ARGV[3], ARGV[2])
  redis.call('HINCRBY', KEYS[5], 't', ARGV[2])
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[3])
  local ms = math.floor(tonumber(ARGV[4]) * 1000) + 1000
  redis.call('PEXPIRE', KEYS[4], ms)
  redis.call('PEXPIRE', KEYS[5], ms)
end
return {{0}}
"""

# Releases up to ARGV[1] units of reservation ARGV[2] (KEYS 1 reservation zset, 2 reservation hash).
_UNRESERVE_BODY: Final = """
local function unreserve(z, h, units, id)
  local v = tonumber(redis.call('HGET', h, id) or '0')
  if v <= 0 then return end
  local take = math.min(v, tonumber(units))
  redis.call('HINCRBY', h, 't', '-' .. string.format('%.0f', take))
  if take >= v then
    redis.call('HDEL', h, id)
    redis.call('ZREM', z, id)
  else
    redis.call('HINCRBY', h, id, '-' .. string.format('%.0f', take))
  end
end
"""
_UNRESERVE: Final = _UNRESERVE_BODY + """
unreserve(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Settling a call that holds a reservation: _RECORD's KEYS 1-4 and ARGV 1-2, then KEYS 5-6 the reservation
# zset and hash, ARGV 3-4 units and id. One script: no admission sees the reservation gone but not the cost.
_SETTLE_RESERVED: Final = _PRELUDE + _UNRESERVE_BODY + _RECORD_BODY + """
unreserve(KEYS[5], KEYS[6], ARGV[3], ARGV[4])
return 1
"""

_RESERVED: Final = """
return redis.call('HGET', KEYS[1], 't') or '0'
"""

_CLEAR: Final = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
"""

# ARGV: configured budget (units or 'none'), force (0/1). Joining with the fleet's configured value keeps
# the effective one (which increase_budget may have raised); anything else replaces both.
_SET_BUDGET: Final = f"""
if ARGV[2] == '0' and redis.call('HGET', KEYS[1], 'cfg') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], {_LIMIT_TTL_MS})
  return redis.call('HGET', KEYS[1], 'eff')
end
redis.call('HSET', KEYS[1], 'cfg', ARGV[1], 'eff', ARGV[1])
redis.call('PEXPIRE', KEYS[1], {_LIMIT_TTL_MS})
return ARGV[1]
"""

# ARGV: amount in units, the base to raise when the fleet has no budget yet (units).
_INCREASE: Final = f"""
local eff = redis.call('HGET', KEYS[1], 'eff')
if not eff or eff == '{_NO_BUDGET}' then redis.call('HSET', KEYS[1], 'eff', ARGV[2]) end
local raised = redis.call('HINCRBY', KEYS[1], 'eff', ARGV[1])
redis.call('PEXPIRE', KEYS[1], {_LIMIT_TTL_MS})
return tostring(raised)
"""


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
        self.client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        register = self.client.register_script
        self.admit = register(_ADMIT)
        self.publish = register(_PUBLISH)
        self.release = register(_RELEASE)
        self.record = register(_RECORD)
        self.count = register(_COUNT)
        self.uncount = register(_UNCOUNT)
        self.read = register(_READ)
        self.clear = register(_CLEAR)
        self.set_budget = register(_SET_BUDGET)
        self.increase = register(_INCREASE)
        self.reserve = register(_RESERVE)
        self.unreserve = register(_UNRESERVE)
        self.settle_reserved = register(_SETTLE_RESERVED)
        self.reserved = register(_RESERVED)
        self.down = False
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN_S
        self._probing = False

    def usable(self) -> bool:
        """True if a round trip should be tried now: Redis is up, or this caller makes the reconnect attempt."""
        if not self.down:
            return True
        with self._lock:
            if self._probing or time.monotonic() < self._retry_at:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        if self.down:
            with self._lock:
                if self.down:
                    self.down = False
                    self._probing = False
                    self._backoff = BACKOFF_MIN_S
                    logger.warning("agentwatch: limits backend %s reachable again; fleet-wide limits resumed",
                                   _redact(self.url))

    def failed(self, exc: BaseException, blocking: bool = False) -> None:
        with self._lock:
            self._probing = False
            if not self.down:
                self.down = True
                self._backoff = BACKOFF_MIN_S
                consequence = ("blocking every LLM call (limits_fallback='block')" if blocking
                               else "enforcing limits per process")
                logger.warning("agentwatch: limits backend %s unreachable (%s: %s); %s until it is back",
                               _redact(self.url), type(exc).__name__, exc, consequence)
            else:
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
                logger.debug("agentwatch: limits backend still unreachable: %s", exc)
            self._retry_at = time.monotonic() + self._backoff


def _redact(url: str) -> str:
    # redis://user:password@host -> redis://***@host: warnings end up in logs.
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


_backends: dict[str, RedisBackend] = {}
_backends_lock = threading.Lock()


def backend_for(url: str) -> RedisBackend:
    """The process's backend for ``url`` (created once; connecting happens on first use, not here)."""
    with _backends_lock:
        backend = _backends.get(url)
        if backend is None:
            backend = _backends[url] = RedisBackend(url)
        return backend


def _units_arg(usd: float | None) -> str:
    return str(usd_to_units(usd)) if usd is not None else ""


class RedisWindowStore:
    """A ``SharedBreakerStore`` whose windows and breaker state live in Redis, shared by every process using
    the same keys.

    ``scope``/``scope_id`` name the keys (``agentwatch:{global:<agent_name>}:...``), so processes share a
    scope exactly when they share its id. Locking is the monitor's; ``record`` is lock-free (the Redis
    client's pool is thread-safe). Costs one round trip per admission and one per settlement, per scope;
    a transition costs one more, where it is made.
    """

    __slots__ = ("_backend", "_keys", "_limit_key", "_state_keys", "_probe_key", "_reserve_keys", "_settle_keys",
                 "_held_keys", "_local", "_armed", "_limits",
                 "_args", "_joined", "_spend_read", "_last_spent", "_shared_budget", "_blocking", "_token",
                 "generation", "reply")

    def __init__(self, backend: RedisBackend, scope: str, scope_id: str, *, prefix: str = KEY_PREFIX,
                 fallback: str = "local") -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"limits_fallback must be one of {FALLBACKS}, got {fallback!r}")
        self._backend = backend
        tag = f"{prefix}:{{{scope}:{scope_id}}}"  # one hash tag: every key of a scope on one cluster slot
        self._keys = [f"{tag}:{name}" for name in ("sz", "sh", "dz", "dh", "cz", "ch", "lim", "brk", "prb")]
        self._limit_key = [self._keys[6]]
        self._state_keys = self._keys[7:]
        self._probe_key = [self._keys[8]]
        # Hard budgets: reservations in flight (zset of ids by expiry, hash of amounts and their total).
        reservations = [f"{tag}:rz", f"{tag}:rh"]
        self._reserve_keys = [self._keys[0], self._keys[1], self._keys[6], *reservations]
        self._settle_keys = [*self._keys[:4], *reservations]
        self._held_keys = reservations
        # Shadows this process's calls with no limits while Redis is up; armed with the real limits when
        # it is down, so the fallback starts from this process's recent history rather than from zero.
        self._local = LocalWindowStore()
        self._armed = False
        self._blocking = fallback == "block"
        # Names the holder of the fleet's probe slot: one monitor per store, and the monitor's own probe
        # object tells its admissions apart.
        self._token = secrets.token_hex(8)
        self._limits: tuple[float | None, float | None, int | None] = (None, None, None)
        # The admission script's ARGV, reused (filled in under the monitor's lock): mode, budget, error
        # rate, calls, generation, probe token, probe expiry.
        self._args = ["0", "", "", "", "", self._token, str(int(PROBE_TTL_S * 1000))]
        self._joined = False
        self._spend_read = False
        self._last_spent = 0.0
        self._shared_budget: float | None = None
        self.generation = ""  # none yet: the first reply is the whole record, and is followed
        self.reply: SharedState | None = None

    # ---- limits -----------------------------------------------------------------------------------

    def set_limits(self, budget_per_hour: float | None, max_error_rate: float | None,
                   max_calls_per_minute: int | None) -> None:
        previous = self._limits[0]
        increase = self._spend_read and self._joined and budget_per_hour is not None
        self._spend_read = False
        self._limits = (budget_per_hour, max_error_rate, max_calls_per_minute)
        self._args[1:4] = [_units_arg(budget_per_hour), repr(max_error_rate) if max_error_rate is not None else "",
                           str(max_calls_per_minute) if max_calls_per_minute is not None else ""]
        if self._armed:
            self._local.set_limits(*self._limits)
        first = not self._joined
        self._joined = True
        if not first and budget_per_hour == previous:
            return
        backend = self._backend
        if not backend.usable():
            return  # the change applies locally now; the fleet keeps its budget
        try:
            if increase:
                assert budget_per_hour is not None
                base = usd_to_units(previous if previous is not None else self._last_spent)
                raised = backend.increase(keys=self._limit_key,
                                          args=[usd_to_units(budget_per_hour) - base, base])
            else:
                configured = _units_arg(budget_per_hour) or _NO_BUDGET
                raised = backend.set_budget(keys=self._limit_key, args=[configured, "0" if first else "1"])
        except backend.errors as exc:
            backend.failed(exc, self._blocking)
            return
        backend.succeeded()
        self._shared_budget = _budget(raised)

    def shared_budget(self) -> float | None:
        """The fleet's effective hourly budget as last seen by this store (None: no budget)."""
        return self._shared_budget

    # ---- the hot path -----------------------------------------------------------------------------

    def evaluate(self, now: float, count_call: bool) -> Violation | None:
        self._spend_read = False
        backend = self._backend
        if backend.down and not backend.usable():
            return self._unreachable(now, count_call)
        args = self._args
        args[0] = "1" if count_call else "0"
        args[4] = self.generation
        try:
            result = backend.admit(keys=self._keys, args=args)
        except backend.errors as exc:
            backend.failed(exc, self._blocking)
            return self._unreachable(now, count_call)
        if backend.down:
            backend.succeeded()
        if self._armed:
            self._disarm()
        if len(result) > 3:  # the breaker record changed or is not CLOSED: the monitor takes it from here
            self.reply = self._shared(now, count_call, result)
            return FLEET_VERDICT
        code = result[0]
        if code == 0:
            if count_call:
                self._local.evaluate(now, True)  # unlimited: only counts (and folds shadowed results)
            return None
        return self._violation(code, result[1], result[2])

    def record(self, now: float, cost_usd: float, error: bool) -> None:
        self._local.record(now, cost_usd, error)
        backend = self._backend
        if backend.down and not backend.usable():
            return
        try:
            backend.record(keys=self._keys, args=[usd_to_units(cost_usd), 1 if error else 0])
        except backend.errors as exc:
            backend.failed(exc, self._blocking)
            return
        if backend.down:
            backend.succeeded()

    # ---- hard budgets -----------------------------------------------------------------------------

    def reserve(self, now: float, units: int, rid: int) -> Violation | None:
        self._spend_read = False
        backend = self._backend
        if not (backend.down and not backend.usable()):
            try:
                result = backend.reserve(keys=self._reserve_keys,
                                         args=[self._args[1], units, f"{self._token}:{rid}", repr(RESERVATION_TTL_S)])
            except backend.errors as exc:
                backend.failed(exc, self._blocking)
            else:
                if backend.down:
                    backend.succeeded()
                if result[0] == 0:
                    return None
                self._shared_budget = _budget(result[1])
                return HARD_BUDGET, units_to_usd(int(result[1])), units_to_usd(int(result[2]))
        # Unreachable: blocking fails closed; "local" reserves in the per-process fallback windows.
        return UNREACHABLE_VERDICT if self._blocking else self._fallback().reserve(now, units, rid)

    def release(self, units: int, rid: int) -> None:
        self._spend_read = False
        self._local.release(units, rid)
        self._run(self._backend.unreserve, self._held_keys, [units, f"{self._token}:{rid}"])

    def settle_reserved(self, now: float, cost_usd: float, error: bool, units: int, rid: int) -> None:
        self._spend_read = False
        self._local.settle_reserved(now, cost_usd, error, units, rid)
        self._run(self._backend.settle_reserved, self._settle_keys,
                  [usd_to_units(cost_usd), 1 if error else 0, units, f"{self._token}:{rid}"])

    def reserved(self) -> float:
        held = self._run(self._backend.reserved, self._held_keys[1:])
        return units_to_usd(int(held)) if held is not None else self._local.reserved()

    # ---- the shared breaker state -----------------------------------------------------------------

    def consult(self, now: float, count_call: bool) -> SharedState | Violation | None:
        self._spend_read = False
        result = self._admit_script("1" if count_call else "0", "")  # '' is no generation: the whole record
        if result is None:
            return UNREACHABLE_VERDICT if self._blocking else None
        return self._shared(now, count_call, result)

    def windows(self, now: float) -> Violation | None:
        self._spend_read = False
        result = self._admit_script("2", "")
        if result is None:
            # Blocking: the windows are unknown and calls are blocked anyway; the probe's success stands.
            return None if self._blocking else self._fallback().evaluate(now, False)
        return None if result[0] == 0 else self._violation(result[0], result[1], result[2])

    def publish(self, event: str, to_state: str, reason: str, threshold: float | None, current: float | None,
                trip: tuple[str, float | None, float | None] | None, *, pause_s: float = 0.0,
                if_generation: bool = False, if_probe: bool = False) -> SharedState | bool:
        self._spend_read = False
        backend = self._backend
        if backend.down and not backend.usable():
            self.generation = ""  # local from here on: whatever Redis says next is followed
            return False
        trip_reason, trip_threshold, trip_current = trip if trip is not None else ("", None, None)
        # An unknown generation ("") must fail a condition, and "" as ARGV means "no condition": use "?".
        args = [(self.generation or "?") if if_generation else "", self._token if if_probe else "",
                _CODES[to_state], event, reason, _arg(threshold), _arg(current), trip_reason, _arg(trip_threshold),
                _arg(trip_current), repr(float(pause_s))]
        try:
            result = backend.publish(keys=self._state_keys, args=args)
        except backend.errors as exc:
            backend.failed(exc, self._blocking)
            self.generation = ""
            return False
        if backend.down:
            backend.succeeded()
        if result[0] == 1:
            self.generation = _text(result[1]) or ""
            return True
        # Another process's transition won the race: one more round trip (only then) for what it made.
        record = self._admit_script("0", "")
        if record is None:
            self.generation = ""
            return False
        return self._shared(0.0, False, record)

    def release_probe(self) -> None:
        self._run(self._backend.release, self._probe_key, [self._token])

    # ---- the rest of the protocol -----------------------------------------------------------------

    def count_call(self, now: float) -> None:
        self._spend_read = False
        self._local.count_call(now)
        self._run(self._backend.count, self._keys)

    def uncount_call(self, now: float) -> None:
        self._spend_read = False
        self._local.uncount_call(now)
        self._run(self._backend.uncount, self._keys)

    def spend(self, now: float) -> float:
        read = self._read()
        spent = units_to_usd(int(read[0])) if read is not None else self._fallback().spend(now)
        # increase_budget reads the spend right before set_limits (see the module docstring).
        self._spend_read = True
        self._last_spent = spent
        return spent

    def calls(self, now: float) -> int:
        self._spend_read = False
        read = self._read()
        return int(read[3]) if read is not None else self._fallback().calls(now)

    def outcomes(self, now: float) -> tuple[int, int]:
        self._spend_read = False
        read = self._read()
        return (int(read[1]), int(read[2])) if read is not None else self._fallback().outcomes(now)

    def clear(self) -> None:
        self._spend_read = False
        self._local.clear()
        self._run(self._backend.clear, self._keys[:6])

    # ---- internals --------------------------------------------------------------------------------

    def _unreachable(self, now: float, count_call: bool) -> Violation | None:
        return UNREACHABLE_VERDICT if self._blocking else self._fallback().evaluate(now, count_call)

    def _violation(self, code: int, a: Any, b: Any) -> Violation:
        if code == 1:
            self._shared_budget = _budget(a)
            return BUDGET_PER_HOUR, units_to_usd(int(a)), units_to_usd(int(b))
        if code == 2:
            completed, errors = int(a), int(b)
            return MAX_ERROR_RATE, self._limits[1], errors / completed  # type: ignore[return-value]
        return MAX_CALLS_PER_MINUTE, self._limits[2], int(a)  # type: ignore[return-value]

    def _shared(self, now: float, count_call: bool, r: list[Any]) -> SharedState:
        code, state, probe = r[0], _STATES.get(r[4], "CLOSED"), r[6]
        if code == 0 and count_call and (state == "CLOSED" or probe == PROBE_GRANTED):
            self._local.evaluate(now, True)  # counted in Redis: shadow it
        trip_reason = _text(r[11])
        return SharedState(
            generation=_text(r[3]) or "0", state=state, remaining=r[5] / 1000.0, probe=probe,
            verdict=None if code in (0, 4) else self._violation(code, r[1], r[2]),
            event=_text(r[7]), reason=_text(r[8]), threshold=_value(r[9]), current=_value(r[10]),
            trip=(trip_reason, _value(r[12]), _value(r[13])) if trip_reason else None,
        )

    def _admit_script(self, mode: str, generation: str) -> list[Any] | None:
        """The admission script off the hot path (its own ARGV); None if Redis is unreachable."""
        args = list(self._args)
        args[0], args[4] = mode, generation
        result = self._run(self._backend.admit, self._keys, args)
        if result is not None and self._armed:
            self._disarm()
        return result  # type: ignore[no-any-return]

    def _fallback(self) -> LocalWindowStore:
        if not self._armed:
            self._local.set_limits(*self._limits)
            self._armed = True
        return self._local

    def _disarm(self) -> None:
        self._local.set_limits(None, None, None)
        self._armed = False

    def _run(self, script: Any, keys: list[str], args: list[Any] | None = None) -> Any:
        backend = self._backend
        if backend.down and not backend.usable():
            return None
        try:
            result = script(keys=keys, args=args or [])
        except backend.errors as exc:
            backend.failed(exc, self._blocking)
            return None
        if backend.down:
            backend.succeeded()
        return result

    def _read(self) -> list[Any] | None:
        read = self._run(self._backend.read, self._keys)
        if read is not None:
            self._shared_budget = _budget(read[4]) if read[4] else self._limits[0]
        return read  # type: ignore[no-any-return]


def _budget(value: Any) -> float | None:
    if value is None or value is False:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return None if text == _NO_BUDGET else units_to_usd(int(text))


def _arg(value: float | None) -> str:
    # Threshold and current values keep their type through Redis: '' is None, an int stays an int.
    return "" if value is None else repr(value)


def _text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text or None


def _value(value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:  # not written by us: ignore rather than break a call
            return None
