"""Fleet-wide rolling windows in Redis: one budget, one error rate, one call rate for N processes.

Every operation is one Lua script (``_redis_scripts``: one round trip, atomic on the server), sent through the
process's connection for the URL (``_redis_backend``). The scripts read the clock with
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
A probe whose process dies frees the slot after ``PROBE_TTL_S``. Every call renews the record, which expires
after a day without calls on the scope anywhere in the fleet; generations are Redis microseconds, so one never
comes back after an expiry. A record lost within that day (Redis restarted without persistence, a failover) is
not a recovery: a monitor still OPEN or PAUSED that saw that state in the record (or put it there) within the day
publishes it again (only while there is still no record: the first process wins), so a kill or a trip holds until
someone lifts it. A state seen longer ago is not put back (the record may have been lifted, then expired), nor is
one the record never held (a trip made from the fallback windows during an outage).

The budget: the first ``set_limits`` of a store *joins*: if the fleet's configured budget equals ours, the
shared effective budget (possibly raised by ``increase_budget``) is kept; otherwise ours replaces it (a new
deploy with a new budget wins). Later changes (``Monitor.update``) set it for the fleet. ``increase_budget``
adds its amount to the shared budget, so two processes raising by $5 each raise it by $10; an operator's grant
from the collector, which every process of the fleet applies, raises it once (``grant_once``: the first process to
claim the grant's id in Redis raises the budget, the others only take the raised budget as theirs). The breaker
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
succeeds. A transition made during an outage stays local, and the next reply from Redis is followed whatever it
is, except a kill or a pause (the operator's), which the monitor then publishes if the record is still the one
it saw before (or is gone: a newer one, a resume made elsewhere meanwhile, is followed); but spend is not forgotten:
after an outage each store, before its next admission, adds to the fleet's window what this process spent that
Redis never took, and at least this process's own spend of the hour (Redis may come back empty: a restart without
persistence, a failover) (``RECONCILE``). Calls and outcomes of the
outage are not copied back: their windows are minutes long. What frees something held in Redis is
the exception: a hard budget's settlement (its cost and the release of its reservation) or release, and the
release of the probe slot, are kept by the backend when Redis does not answer and sent when it answers again
(before the reconnecting caller's own round trip), so a hiccup does not leave a finished call's reservation held
for ``RESERVATION_TTL_S``. A settlement whose round trip failed may have run in Redis all the same: it is sent
again only to count if its reservation is still held.

A reservation expires after ``RESERVATION_TTL_S`` only if its process stops renewing it: the export worker (awake
every ``flush_interval``) renews the reservations of the process's calls in flight every third of that lifetime
(``renew_reservations``), so a call running longer keeps its reservation, and one whose process died loses it.
"""

from __future__ import annotations

import secrets
import weakref
from typing import Any, Final

from ._breaker_states import CLOSED, HALF_OPEN, OPEN, PAUSED
from ._forking import after_fork_in_child
from ._idle import every_idle
from ._redis_backend import SOCKET_TIMEOUT_S, RedisBackend, backend_for, backends
from ._redis_scripts import NO_BUDGET
from ._windows import (
    BUDGET_PER_HOUR,
    HARD_BUDGET,
    MAX_CALLS_PER_MINUTE,
    MAX_ERROR_RATE,
    NO_RECORD,
    UNREACHABLE_VERDICT,
    LocalWindowStore,
    ProbeSlot,
    SharedState,
    Violation,
    units_to_usd,
    usd_to_units,
)

__all__ = ["RedisBackend", "RedisWindowStore", "backend_for", "SOCKET_TIMEOUT_S", "KEY_PREFIX", "PROBE_TTL_S",
           "FALLBACKS", "RESERVATION_TTL_S", "GRANT_CLAIM_TTL_S", "renew_reservations"]

KEY_PREFIX: Final = "agentwatch"
#: How long the fleet's probe slot stays taken if its call never settles (its process died): longer than
#: almost any single LLM call, short enough that a lost probe does not hold the fleet back for long.
PROBE_TTL_S: Final = 120.0
#: How long a hard budget's reservation is held once its process stops renewing it (it died): the fleet's money a
#: dead process holds is free again after this.
RESERVATION_TTL_S: Final = 900.0
#: How long the claim of an operator's grant is kept: longer than the collector lists a grant (an hour).
GRANT_CLAIM_TTL_S: Final = 7200.0
#: ``limits_fallback`` values: enforce per process from the shadow windows, or block every call.
FALLBACKS: Final = ("local", "block")

# The shared breaker record's states (HALF_OPEN is never stored: it is PAUSED after the pause end), as the
# breaker's own constants (a monitor compares states by identity).
_STATES: Final = {b"C": CLOSED, b"O": OPEN, b"P": PAUSED, b"H": HALF_OPEN}
_CODES: Final = {CLOSED: "C", OPEN: "O", PAUSED: "P"}


def renew_reservations() -> None:
    """Renew the reservations of this process's calls in flight, a third of their lifetime after the last renewal
    (run by the export worker when idle: see ``_idle``)."""
    for backend in backends():
        backend.renew(RESERVATION_TTL_S, RESERVATION_TTL_S / 3)


every_idle(renew_reservations)

#: The process's stores, for a forked child to name itself anew.
_stores: weakref.WeakSet[RedisWindowStore] = weakref.WeakSet()


def _new_tokens_in_child() -> None:
    """After a fork (a prefork server forking its workers after ``init()``): the child's reservations and probe slot
    get a name of their own. With the parent's, sibling workers counting their calls alike held their reservations
    under the same ids: a settlement sent again after a timeout released a sibling's reservation of a call in flight
    (and counted the cost twice), and a probe slot was any sibling's to give back."""
    for store in list(_stores):
        store.new_token()


after_fork_in_child(_new_tokens_in_child)


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
                 "_grant", "_tag", "_outages_seen", "generation", "__weakref__")

    def __init__(self, backend: RedisBackend, scope: str, scope_id: str, *, prefix: str = KEY_PREFIX,
                 fallback: str = "local") -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"limits_fallback must be one of {FALLBACKS}, got {fallback!r}")
        self._backend = backend
        tag = f"{prefix}:{{{scope}:{scope_id}}}"  # one hash tag: every key of a scope on one cluster slot
        self._tag = tag
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
        self._grant: str | None = None  # the operator grant the next increase applies (``grant_once``)
        self._outages_seen = backend.outages  # an outage after this one: reconcile before the next admission
        self.generation = ""  # none yet: the first reply is the whole record, and is followed
        _stores.add(self)

    def new_token(self) -> None:
        """Name this store's reservations and probe slot anew (a forked child's store is the parent's copy)."""
        self._token = self._args[5] = secrets.token_hex(8)

    # ---- limits -----------------------------------------------------------------------------------

    def set_limits(self, budget_per_hour: float | None, max_error_rate: float | None,
                   max_calls_per_minute: int | None) -> None:
        previous = self._limits[0]
        increase = self._spend_read and self._joined and budget_per_hour is not None
        grant, self._grant = self._grant, None
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
                args: list[Any] = [usd_to_units(budget_per_hour) - base, base]
                keys = self._limit_key
                if grant is not None:  # applied once fleet-wide, by the first process to claim it
                    keys = [*keys, f"{self._tag}:grant:{grant}"]
                    args.append(int(GRANT_CLAIM_TTL_S * 1000))
                raised = backend.increase(keys=keys, args=args)
            else:
                configured = _units_arg(budget_per_hour) or NO_BUDGET
                raised = backend.set_budget(keys=self._limit_key, args=[configured, "0" if first else "1"])
        except backend.errors as exc:
            backend.failed(exc, self._blocking)
            return
        backend.succeeded()
        self._shared_budget = _budget(raised)

    def grant_once(self, action: str) -> None:
        """The increase that follows (``Monitor.increase_budget``, under the monitor's lock) is the operator action
        ``action`` (unique per grant), which every process of the fleet applies: the fleet's budget is raised by the
        first of them only."""
        self._grant = action

    def shared_budget(self) -> float | None:
        """The fleet's effective hourly budget as last seen by this store (None: no budget)."""
        return self._shared_budget

    # ---- the hot path -----------------------------------------------------------------------------

    def evaluate(self, now: float, count_call: bool) -> Violation | SharedState | None:
        self._spend_read = False
        backend = self._backend
        if backend.down and not backend.usable():
            return self._unreachable(now, count_call)
        if self._outages_seen != backend.outages and not self._reconcile(now):
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
            return self._shared(now, count_call, result)
        code = result[0]
        if code == 0:
            if count_call:
                self._local.evaluate(now, True)  # unlimited: only counts (and folds shadowed results)
            return None
        return self._violation(code, result[1], result[2])

    def record(self, now: float, cost_usd: float, error: bool) -> None:
        self._local.record(now, cost_usd, error)
        backend = self._backend
        units = usd_to_units(cost_usd)
        if backend.down and not backend.usable():
            backend.miss(self._tag, units)
            return
        try:
            backend.record(keys=self._keys, args=[units, 1 if error else 0])
        except backend.errors as exc:
            backend.miss(self._tag, units)  # it may have run: then counted twice, never lost
            backend.failed(exc, self._blocking)
            return
        if backend.down:
            backend.succeeded()

    # ---- hard budgets -----------------------------------------------------------------------------

    def reserve(self, now: float, units: int, rid: int) -> Violation | None:
        self._spend_read = False
        backend = self._backend
        if not (backend.down and not backend.usable()) and (self._outages_seen == backend.outages
                                                             or self._reconcile(now)):
            try:
                result = backend.reserve(keys=self._reserve_keys,
                                         args=[self._args[1], units, f"{self._token}:{rid}", repr(RESERVATION_TTL_S)])
            except backend.errors as exc:
                backend.failed(exc, self._blocking)
            else:
                if backend.down:
                    backend.succeeded()
                if result[0] == 0:
                    if units:
                        backend.hold(self._held_keys, f"{self._token}:{rid}", units)
                    return None
                self._shared_budget = _budget(result[1])
                return HARD_BUDGET, units_to_usd(int(result[1])), units_to_usd(int(result[2]))
        # Unreachable: blocking fails closed; "local" reserves in the per-process fallback windows.
        return UNREACHABLE_VERDICT if self._blocking else self._fallback().reserve(now, units, rid)

    def release(self, units: int, rid: int) -> None:
        self._spend_read = False
        self._local.release(units, rid)
        member = f"{self._token}:{rid}"
        args: list[Any] = [units, member]
        if units:
            self._backend.unhold(self._held_keys, member, units)
            self._run(self._backend.unreserve, self._held_keys, args, args)  # releasing twice releases once

    def settle_reserved(self, now: float, cost_usd: float, error: bool, units: int, rid: int) -> None:
        self._spend_read = False
        self._local.settle_reserved(now, cost_usd, error, units, rid)
        member = f"{self._token}:{rid}"
        args: list[Any] = [usd_to_units(cost_usd), 1 if error else 0, units, member, ""]
        if units:
            self._backend.unhold(self._held_keys, member)
        # Kept for Redis if it does not answer only when a reservation is held there (else: recorded as any result is).
        if self._run(self._backend.settle_reserved, self._settle_keys, args, [*args[:4], "1"] if units else None) \
                is None and not units:
            self._backend.miss(self._tag, args[0])

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
        backend.unhold_probe(self._probe_key[0])  # a transition published, here or elsewhere, freed the slot
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
        # Kept if Redis does not answer: a probe slot left taken blocks the fleet's calls for PROBE_TTL_S.
        args = [self._token]
        self._backend.unhold_probe(self._probe_key[0])
        self._run(self._backend.release, self._probe_key, args, args)

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

    def forget_rates(self) -> None:
        self._local.forget_rates()
        # The fleet's outcome and call windows ("dz", "dh", "cz", "ch"); the CLEAR script deletes the six keys it
        # is given.
        self._run(self._backend.clear, [*self._keys[2:6], *self._keys[2:4]])

    def clear(self) -> None:
        self._spend_read = False
        self._local.clear()
        self._backend.take_missed(self._tag)  # forgotten with the rest
        self._run(self._backend.clear, self._keys[:6])

    # ---- internals --------------------------------------------------------------------------------

    def _unreachable(self, now: float, count_call: bool) -> Violation | None:
        return UNREACHABLE_VERDICT if self._blocking else self._fallback().evaluate(now, count_call)

    def _reconcile(self, now: float) -> bool:
        """After an outage (``RECONCILE``): the fleet's window takes what this process spent that Redis never took,
        and at least this process's own spend. False if Redis did not answer (then again at the next admission)."""
        backend = self._backend
        outages = backend.outages
        missed = backend.take_missed(self._tag)
        try:
            backend.reconcile(keys=self._keys[:2], args=[missed, usd_to_units(self._local.spend(now))])
        except backend.errors as exc:
            backend.miss(self._tag, missed)  # it may have run: then counted twice, never lost
            backend.failed(exc, self._blocking)
            return False
        if backend.down:
            backend.succeeded()
        self._outages_seen = outages
        return True

    def _violation(self, code: int, a: Any, b: Any) -> Violation:
        if code == 1:
            self._shared_budget = _budget(a)
            return BUDGET_PER_HOUR, units_to_usd(int(a)), units_to_usd(int(b))
        if code == 2:
            completed, errors = int(a), int(b)
            return MAX_ERROR_RATE, self._limits[1], errors / completed  # type: ignore[return-value]
        return MAX_CALLS_PER_MINUTE, self._limits[2], int(a)  # type: ignore[return-value]

    def _shared(self, now: float, count_call: bool, r: list[Any]) -> SharedState:
        code, state, probe = r[0], _STATES.get(r[4], CLOSED), ProbeSlot(r[6])
        if probe is ProbeSlot.GRANTED:  # released if SIGTERM ends this process before the probe settles
            self._backend.hold_probe(self._probe_key[0], self._token)
        if code == 0 and count_call and (state is CLOSED or probe is ProbeSlot.GRANTED):
            self._local.evaluate(now, True)  # counted in Redis: shadow it
        trip_reason = _text(r[11])
        return SharedState(
            generation=_text(r[3]) or NO_RECORD, state=state, remaining=r[5] / 1000.0, probe=probe,
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

    def _run(self, script: Any, keys: list[str], args: list[Any] | None = None,
             resend: list[Any] | None = None) -> Any:
        """One script round trip; None if Redis did not answer. ``resend`` (what frees something held in Redis: a
        reservation, the probe slot): if Redis does not answer, the backend keeps the operation and sends it when
        Redis answers again, with ``resend`` as its ARGV if the failed round trip may have run it all the same."""
        backend = self._backend
        if backend.down and not backend.usable():
            if resend is not None:
                backend.defer(script, keys, args or [], resend, self._blocking)
            return None
        try:
            result = script(keys=keys, args=args or [])
        except backend.errors as exc:
            if resend is not None:
                backend.defer(script, keys, resend, resend, self._blocking)
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
    return None if text == NO_BUDGET else units_to_usd(int(text))


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
