"""The Lua scripts of the Redis window store (``_redis_windows``): one script per operation, so each is one
round trip and atomic on the server.

Every script reads the clock with Redis ``TIME`` (all machines judge the windows by the same clock). A window
is a sorted set of bucket ids plus a hash of bucket values and running totals, bucketed like
``LocalWindowStore``; every key expires with its window. The comments above each script give its KEYS, ARGV
and reply, which ``RedisWindowStore`` builds and decodes.
"""

from __future__ import annotations

from typing import Final

from ._windows import (
    BUCKETS_PER_WINDOW,
    CALLS_WINDOW_S,
    ERROR_RATE_MIN_CALLS,
    ERROR_WINDOW_S,
    SHARED_RECORD_TTL_S,
    SPEND_WINDOW_S,
)

__all__ = ["LIMIT_TTL_MS", "NO_BUDGET", "ADMIT", "PUBLISH", "RELEASE", "RECORD", "COUNT", "UNCOUNT", "READ", "RESERVE",
           "UNRESERVE", "SETTLE_RESERVED", "RENEW", "RESERVED", "CLEAR", "SET_BUDGET", "INCREASE", "RECONCILE"]

#: The shared budget outlives the windows: a raise must survive a quiet hour. Refreshed on every check.
LIMIT_TTL_MS: Final = int(SHARED_RECORD_TTL_S * 1000)
#: The shared budget's value when no budget is configured.
NO_BUDGET: Final = "none"

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
    redis.call('PEXPIRE', KEYS[7], {LIMIT_TTL_MS})
  end
  if budget ~= '' and budget ~= '{NO_BUDGET}' then
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
# means blocked by the state (the windows were not looked at) and probe is a ``ProbeSlot`` (FREE/HELD/GRANTED).
ADMIT: Final = _PRELUDE + _CHECK + f"""
local mode = ARGV[1]
-- Every call renews the record (CLOSED too): it expires only after a day without calls anywhere in the fleet, so a
-- monitor that saw its state in it within that day can tell a lost record from an expired one.
redis.call('PEXPIRE', KEYS[8], {LIMIT_TTL_MS})
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
end
return {{code, a, b, g, st, math.ceil(left * 1000), probe, rec[2] or false, rec[3] or false, rec[4] or false,
        rec[5] or false, rec[6] or false, rec[7] or false, rec[8] or false}}
"""

# KEYS: 1 the breaker record, 2 the probe slot. ARGV 1: the generation that must still be current ('' = no
# condition); 2: the token that must hold the probe slot ('' = none); 3: state C/O/P; 4-7: event, reason,
# threshold, current; 8-10: the trip; 11: pause seconds. Returns {1, new generation} or {0} (a condition
# failed: the fleet moved on). Generations only grow, also across an expiry of the record: Redis TIME in us.
PUBLISH: Final = f"""
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
redis.call('PEXPIRE', KEYS[1], {LIMIT_TTL_MS})
return {{1, ng}}
"""

RELEASE: Final = """
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
RECORD: Final = _PRELUDE + _RECORD_BODY + """
return 1
"""

COUNT: Final = _PRELUDE + """
evict_calls()
add(KEYS[5], KEYS[6], CB, CW, 'b', 't', 1)
return 1
"""

UNCOUNT: Final = _PRELUDE + """
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
READ: Final = _PRELUDE + """
evict_spend(); evict_done(); evict_calls()
return {redis.call('HGET', KEYS[2], 't') or '0', num(KEYS[4], 'tc'), num(KEYS[4], 'te'), num(KEYS[6], 't'),
        redis.call('HGET', KEYS[7], 'eff')}
"""

# After an outage, before the next admission: the spend this process recorded that Redis never took, and a floor,
# this process's own spend in the window (Redis may have come back empty: a restart without persistence, a
# failover). KEYS 1-2: spend zset and hash. ARGV 1: units missed, 2: this process's own units. Returns the units
# added (in the current bucket: they leave the window up to the outage's length late, never early).
RECONCILE: Final = _PRELUDE + """
evict_spend()
local added = tonumber(ARGV[1])
local short = tonumber(ARGV[2]) - (num(KEYS[2], 't') + added)
if short > 0 then added = added + short end
if added > 0 then add(KEYS[1], KEYS[2], SB, SW, 'b', 't', string.format('%d', added)) end
return string.format('%d', added)
"""

# Hard budgets. KEYS: 1 spend zset, 2 spend hash, 3 limits, 4 reservation zset (id -> expiry, Redis seconds),
# 5 reservation hash (id -> units, "t" -> total). ARGV: 1 this process's budget in units ('' none), 2 units to
# reserve, 3 reservation id, 4 its lifetime in seconds. Reservations of a process that died expire. Returns
# {0} (reserved) or {1, budget, spend + reserved} (does not fit). Sums as integers (HINCRBY), compared as
# doubles: exact below 2**53 units ($9,007).
RESERVE: Final = _PRELUDE + f"""
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
if budget == '' or budget == '{NO_BUDGET}' then return {{0}} end
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
UNRESERVE: Final = _UNRESERVE_BODY + """
unreserve(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Settling a call that holds a reservation: RECORD's KEYS 1-4 and ARGV 1-2, then KEYS 5-6 the reservation
# zset and hash, ARGV 3-4 units and id. One script: no admission sees the reservation gone but not the cost.
# ARGV 5 '1': a settlement sent again after a round trip that failed, which Redis may have run all the same: only
# if the reservation is still held (it is released by the settlement that ran), so the cost counts once.
SETTLE_RESERVED: Final = _PRELUDE + _UNRESERVE_BODY + """
if ARGV[5] == '1' and redis.call('HEXISTS', KEYS[6], ARGV[4]) == 0 then return 0 end
""" + _RECORD_BODY + """
unreserve(KEYS[5], KEYS[6], ARGV[3], ARGV[4])
return 1
"""

# Renewing the reservations of calls still in flight. KEYS: 1 reservation zset, 2 reservation hash. ARGV: 1 their
# lifetime from now in seconds, 2... their ids. One no longer held (settled, or expired: a renewal came too late)
# stays gone. Returns how many were renewed.
RENEW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local renewed = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
    renewed = renewed + 1
  end
end
if renewed > 0 then
  local ms = math.floor(tonumber(ARGV[1]) * 1000) + 1000
  redis.call('PEXPIRE', KEYS[1], ms)
  redis.call('PEXPIRE', KEYS[2], ms)
end
return renewed
"""

RESERVED: Final = """
return redis.call('HGET', KEYS[1], 't') or '0'
"""

CLEAR: Final = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
"""

# ARGV: configured budget (units or 'none'), force (0/1). Joining with the fleet's configured value keeps
# the effective one (which increase_budget may have raised); anything else replaces both.
SET_BUDGET: Final = f"""
if ARGV[2] == '0' and redis.call('HGET', KEYS[1], 'cfg') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], {LIMIT_TTL_MS})
  return redis.call('HGET', KEYS[1], 'eff')
end
redis.call('HSET', KEYS[1], 'cfg', ARGV[1], 'eff', ARGV[1])
redis.call('PEXPIRE', KEYS[1], {LIMIT_TTL_MS})
return ARGV[1]
"""

# ARGV: amount in units, the base to raise when the fleet has no budget yet (units). An operator's grant, which
# every process of the fleet applies, also gives KEYS[2], the grant's claim, and ARGV[3], its lifetime in ms: the
# first process to claim it raises the budget, every other one reads it (a grant counts once, not N times).
INCREASE: Final = f"""
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return redis.call('HGET', KEYS[1], 'eff') or false
end
local eff = redis.call('HGET', KEYS[1], 'eff')
if not eff or eff == '{NO_BUDGET}' then redis.call('HSET', KEYS[1], 'eff', ARGV[2]) end
local raised = redis.call('HINCRBY', KEYS[1], 'eff', ARGV[1])
redis.call('PEXPIRE', KEYS[1], {LIMIT_TTL_MS})
return tostring(raised)
"""
