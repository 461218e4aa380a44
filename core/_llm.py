"""Recording one LLM call: check limits before it is sent, then usage, price and outcome after.

This is what framework and provider plugins call. The order is the product's promise: ``start_llm_call``
runs every enclosing breaker *before* the request leaves and raises ``CircuitBreakerException`` if one
blocks; ``LLMCall.end`` prices the call and records cost and outcome in the same monitors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from . import _client as _client_module
from ._breaker import (
    CATCH_UP_EVERY,
    CLOSED,
    Admission,
    CircuitBreakerException,
    Monitor,
    admit_call,
    check,
    settle_call,
    top_up,
    withdraw,
)
from ._capture import capturing
from ._context import (
    CURRENT_LLM_CALL,
    SCOPED,
    AgentScope,
    call_attributes_used,
    get_agent_scopes,
    get_call_attributes,
    get_current_llm_call_var,
    get_current_span,
    reset_current_llm_call,
    reset_current_span,
    set_current_llm_call,
    set_current_span,
)
from ._deferred import pending as deferred_work
from ._deferred import run_deferred
from ._otel_current import OTEL_SPAN_KEY, current_otel_span
from ._reservation import estimator, note_settlement
from ._run_budget import get_run_monitors, keyed_run_monitor
from ._safe import PASS_THROUGH, BlockCarrier, logger, stop_on_exception
from ._span import Span

_time_ns = time.time_ns
_INF = float("inf")

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["LLMCall", "Usage", "start_llm_call", "check_limits", "current_llm_call", "llm_call",
           "normalize_anthropic_usage", "normalize_openai_usage", "record_blocked", "enclosing_monitors", "run_budget",
           "end_span", "CURRENT_LLM_CALL", "mark_blocked", "BLOCK_POINT"]


#: ``start_llm_call``'s default ``request_body``: no request in sight (``None`` is a body, an unreadable one).
NO_BODY: Any = object()


def current_llm_call() -> LLMCall | None:
    """The LLM call in flight in this context (lets a lower layer add to it instead of counting twice).

    An ended call is no call in flight: a framework may end a call in another context than the one it was
    activated in, and a layer asking here must then open its own call, not add to a finished one.
    """
    call = get_current_llm_call_var()
    return None if call is None or call.ended else call


#: No real call comes near this (10**12 tokens); a larger count is garbage. The collector refuses larger
#: counts too, so that its sums stay inside 64-bit integers.
_MAX_TOKENS = 2**40


def _count(value: Any) -> int | None:
    """A token count from a provider response, or None if it is missing or garbage."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if 0 <= value <= _MAX_TOKENS else None
    if isinstance(value, float) and 0 <= value <= _MAX_TOKENS:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        # isdigit() alone accepts '²' and other digits int() refuses: ASCII decimal digits only.
        if text.isascii() and text.isdigit() and len(text) <= 16:
            return _count(int(text))
    return None


@dataclass(slots=True)
class Usage:
    """What a plugin read from a framework's response, before ``LLMCall.set_usage`` cleans it (raw values)."""

    input_tokens: Any = None
    output_tokens: Any = None
    cached_input_tokens: Any = None
    cache_write_tokens: Any = None
    model: str | None = None
    finish_reason: str | None = None

    @property
    def found(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


def normalize_anthropic_usage(input_tokens: Any, output_tokens: Any, cache_read_input_tokens: Any = 0,
                              cache_creation_input_tokens: Any = 0, ephemeral_1h_input_tokens: Any = 0
                              ) -> dict[str, int]:
    """Anthropic's ``input_tokens`` excludes cache reads and writes; the span model counts them in.

    ``ephemeral_1h_input_tokens`` (``usage.cache_creation``): the part of the cache writes made for one hour, which
    cost more than 5-minute ones; ``cache_write_1h_tokens`` is in the answer only when there are some."""
    uncached = _count(input_tokens) or 0
    read = _count(cache_read_input_tokens) or 0
    write = _count(cache_creation_input_tokens) or 0
    usage = {"input_tokens": uncached + read + write, "output_tokens": _count(output_tokens) or 0,
             "cached_input_tokens": read, "cache_write_tokens": write}
    hour = _count(ephemeral_1h_input_tokens) if ephemeral_1h_input_tokens else 0
    if hour:
        usage["cache_write_1h_tokens"] = hour
    return usage


def _field(data: Any, name: str) -> Any:
    if data is None:
        return None
    if data.__class__ is dict:  # the usual usage payload: no isinstance against the Mapping ABC
        return data.get(name)
    return data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)


def normalize_openai_usage(usage: Any) -> dict[str, Any]:
    """``LLMCall.set_usage`` arguments from an OpenAI-style usage object or dict: Chat Completions'
    ``prompt_tokens`` / ``completion_tokens`` / ``prompt_tokens_details.cached_tokens``, or the Responses API's
    ``input_tokens`` / ``output_tokens`` / ``input_tokens_details.cached_tokens``. Both count cached tokens in
    the input, as the span model does; a count that is missing is None (``set_usage`` ignores it)."""
    prompt, completion = _field(usage, "prompt_tokens"), _field(usage, "completion_tokens")
    if prompt is not None or completion is not None:
        cached = _field(_field(usage, "prompt_tokens_details"), "cached_tokens")
        return {"input_tokens": prompt, "output_tokens": completion, "cached_input_tokens": cached}
    return {"input_tokens": _field(usage, "input_tokens"), "output_tokens": _field(usage, "output_tokens"),
            "cached_input_tokens": _field(_field(usage, "input_tokens_details"), "cached_tokens")}


def _monitors(client: Client, scopes: Sequence[AgentScope], budgets: Sequence[Monitor] = ()) -> list[Monitor]:
    """Innermost first, global last, each monitor once: agent scopes, then per-run budgets, then global."""
    context = get_agent_scopes()
    runs = get_run_monitors()
    if not runs and not budgets and len(context) + len(scopes) == 1:
        # One agent scope (every call inside an agent of a framework): the answer without the loops and the set.
        inner = (scopes or context)[0].monitor
        return [inner, client.monitor] if inner is not client.monitor else [inner]
    ordered: list[Monitor] = []
    seen: set[int] = set()
    for scope in reversed((*context, *scopes)):
        if id(scope.monitor) not in seen:
            seen.add(id(scope.monitor))
            ordered.append(scope.monitor)
    for monitor in reversed((*runs, *budgets)):
        if id(monitor) not in seen:
            seen.add(id(monitor))
            ordered.append(monitor)
    ordered.append(client.monitor)
    return ordered


def enclosing_monitors(*, scopes: Sequence[AgentScope] = (), budgets: Sequence[Monitor] = ()) -> list[Monitor]:
    """The monitors an LLM call started here would be checked against, innermost first, global last (empty
    before ``init()``); ``scopes`` and ``budgets`` as in ``start_llm_call``."""
    client = _client_module._active
    return _monitors(client, scopes, budgets) if client is not None else []


def run_budget(key: str, budget: float, *, hard_budget: bool | None = None) -> Monitor | None:
    """The one per-run budget monitor for ``key`` (e.g. ``"thread:<id>"``): ``budget`` USD shared by every
    call passed it in ``budgets=``, across invocations of the same run, with no time window. None before
    ``init()``. The budget given first stays; ``increase_budget`` on the monitor raises it."""
    client = _client_module._active
    return keyed_run_monitor(client, key, budget, hard_budget) if client is not None else None


_HOUR_WRITES = "cache_write_1h_tokens"  # the 1-hour part of Anthropic's cache writes (a span attribute)


class LLMCall:
    """An LLM call in flight. ``end()`` is idempotent; an un-ended call records nothing."""

    __slots__ = ("span", "_client", "_admission", "_tokens", "_cache_write", "ended", "_estimate", "_unanswered",
                 "_fallback_price", "_refused_as", "_units", "monitors_when_sent")

    def __init__(self, span: Span, client: Client | None, admission: Admission | tuple[Monitor, ...] | None) -> None:
        self.span = span
        self._client = client
        # What ``admit_call`` answered: an Admission, or the monitors alone (nothing held for the call).
        self._admission = admission
        self._tokens: tuple[Token[Any], ...] | None = None  # made by activate(): most calls are never activated
        self._cache_write = 0
        #: Billable units other than tokens (``set_billable``) and the 1-hour part of the cache writes
        #: (``_HOUR_WRITES``): charged beyond the token price at ``end()``; None for the usual call, which has none.
        self._units: dict[str, int] | None = None
        #: True once ``end()`` ran (read-only by convention). A plain attribute, not a property: every layer of a call
        #: asks it, and a property is a Python call each time.
        self.ended = False
        self._estimate: tuple[int, int] | None = None
        #: (requests, their input tokens) sent without an answer (``add_unanswered``); None for the usual call.
        self._unanswered: tuple[int, int] | None = None
        self._fallback_price: tuple[Callable[[Span], float | None], str] | None = None
        self._refused_as: Callable[[CircuitBreakerException], CircuitBreakerException] | None = None
        #: A local model's call, recorded unadmitted (``start_llm_call(count_local=False)``): the monitors that admit it
        #: if a lower layer sends a request for it after all (``before_sending``). None for every other call (read-only
        #: by convention; a plain attribute, as ``ended``: a tap reads it for every request it sends).
        self.monitors_when_sent: tuple[Monitor, ...] | None = None

    # ---- filling in ---------------------------------------------------------------------------

    def set_model(self, model: str | None, provider: str | None = None) -> None:
        if model:
            self.span.model = str(model)
        if provider:
            self.span.provider = str(provider)

    def set_usage(self, input_tokens: Any = None, output_tokens: Any = None, cached_input_tokens: Any = None,
                  cache_write_tokens: Any = None, cache_write_1h_tokens: Any = None) -> None:
        """Token counts in the OpenAI convention (input includes cached). Garbage is ignored and flagged.

        ``cache_write_1h_tokens``: the part of ``cache_write_tokens`` written to Anthropic's 1-hour cache (priced at
        its own rate); read only with ``cache_write_tokens``."""
        span = self.span
        # The usual report: plain ints in range (their bitwise or is, exactly when each is in [0, 2**40)), cached
        # (given or not) within input, no cache writes. Checked in one test; anything else goes field by field below.
        if input_tokens.__class__ is int and output_tokens.__class__ is int and cache_write_tokens is None:
            if cached_input_tokens is None:
                if 0 <= (input_tokens | output_tokens) < _MAX_TOKENS and span.cached_input_tokens <= input_tokens:
                    span.input_tokens = input_tokens
                    span.output_tokens = output_tokens
                    return
            elif cached_input_tokens.__class__ is int and cached_input_tokens <= input_tokens \
                    and 0 <= (input_tokens | output_tokens | cached_input_tokens) < _MAX_TOKENS:
                span.input_tokens = input_tokens
                span.output_tokens = output_tokens
                span.cached_input_tokens = cached_input_tokens
                return
        # Plain non-negative ints are the norm; only anything else goes through the slow check. (``__class__``, not
        # ``type()``: an attribute read instead of a call, on every LLM call.)
        if input_tokens is not None:
            if input_tokens.__class__ is int and 0 <= input_tokens <= _MAX_TOKENS:
                span.input_tokens = input_tokens
            else:
                self._set_checked("input_tokens", input_tokens)
        if output_tokens is not None:
            if output_tokens.__class__ is int and 0 <= output_tokens <= _MAX_TOKENS:
                span.output_tokens = output_tokens
            else:
                self._set_checked("output_tokens", output_tokens)
        if cached_input_tokens is not None:
            if cached_input_tokens.__class__ is int and 0 <= cached_input_tokens <= _MAX_TOKENS:
                span.cached_input_tokens = cached_input_tokens
            else:
                self._set_checked("cached_input_tokens", cached_input_tokens)
        if cache_write_tokens is not None:
            self._cache_write = _count(cache_write_tokens) or 0
            span.attributes["cache_write_tokens"] = self._cache_write
            if cache_write_1h_tokens is not None:
                self._add_units(_HOUR_WRITES, min(_count(cache_write_1h_tokens) or 0, self._cache_write))
        if span.cached_input_tokens > span.input_tokens:
            span.attributes["usage_invalid"] = True
            span.cached_input_tokens = span.input_tokens

    def set_billable(self, unit: str, count: Any) -> None:
        """A count of something the provider bills per unit besides tokens (``BILLABLE_UNITS``: the web searches
        of Anthropic's and OpenAI's search tools), replacing any count set before. Recorded as the span attribute
        ``unit`` and charged at ``end()`` at the model's price for it (genai-prices, or ``cost_table_override``);
        a model without one records the count and charges nothing for it. Garbage is ignored and flagged."""
        value = _count(count)
        if value is None:
            self.span.attributes["usage_invalid"] = True
            return
        self._add_units(unit, value)

    def _add_units(self, unit: str, value: int) -> None:
        """Note a count charged beyond the token price at ``end()``, and show it on the span."""
        if self._units is None:
            self._units = {}
        self._units[unit] = self.span.attributes[unit] = value

    def estimate_usage(self, input_tokens: int, output_tokens: int) -> None:
        """Token counts to charge if no layer reports the provider's own by ``end()`` (see ``_estimate``).

        A lower layer (the HTTP tap) estimates when a stream ends without usage; the layer that owns the
        call may still report real usage afterwards, which then wins."""
        self._estimate = (max(0, int(input_tokens)), max(0, int(output_tokens)))

    @property
    def usage_estimate(self) -> tuple[int, int] | None:
        """The (input, output) tokens a layer estimated (``estimate_usage``), or None: a layer that owns the call
        estimates only what no lower layer did."""
        return self._estimate

    def add_unanswered(self, requests: int, input_tokens: int) -> int:
        """``requests`` more requests of this call went out and got no answer (a read timeout, the program cutting
        them off), their prompts about ``input_tokens`` in all: the provider bills them. Charged if the call ends with
        no usage and no estimate of an answer (``estimate_usage``), which stand for an answered call's usage alone.

        Unlike an estimate, these add up: a framework's retries (LiteLLM's ``num_retries``) each send the request
        anew, through an SDK call of its own that joins this one. Returns the call's unanswered requests so far."""
        before_requests, before_tokens = self._unanswered or (0, 0)
        self._unanswered = total = (before_requests + max(0, int(requests)),
                                    before_tokens + max(0, int(input_tokens)))
        return total[0]

    def _set_checked(self, field: str, raw: Any) -> None:
        value = _count(raw)
        if value is None:
            self.span.attributes["usage_invalid"] = True
        else:
            setattr(self.span, field, value)

    @property
    def hard_budget(self) -> bool:
        """Whether a scope of this call has a hard budget (a lower layer then reserves the request's worst case)."""
        admission = self._admission
        return isinstance(admission, Admission) and admission.hard

    def reserve_request(self, body: Any, model: str | None = None, kind: str = "llm") -> None:
        """``top_up`` by the worst-case cost of a request body this call is about to send (as ``request_body`` in
        ``start_llm_call``); nothing to do, and nothing read, unless a scope has a hard budget."""
        admission = self._admission
        if not isinstance(admission, Admission) or not admission.hard or self._client is None:
            return
        span = self.span
        self.top_up(estimator(self._client, model or span.model, span.provider, body, kind))

    def top_up(self, reserve: float | Callable[[], float]) -> None:
        """Reserve more of a hard budget for this call before its request is sent (a lower layer that sees
        the request body knows its worst case). Raises ``CircuitBreakerException`` if it does not fit;
        the span is then marked blocked and the request must not be sent."""
        admission = self._admission
        if not isinstance(admission, Admission) or not admission.hard:
            return
        try:
            top_up(admission, reserve)
        except CircuitBreakerException as blocked:
            self._refuse(blocked)

    def before_sending(self, provider: str | None = None) -> None:
        """A lower layer (an SDK's or HTTP client's tap) is about to send a request of this call to ``provider`` (None:
        a host it cannot name). A local model's call, recorded unadmitted (``start_llm_call(count_local=False)``), is
        checked and counted now, before the request leaves, unless ``provider`` runs on this machine too (an Ollama
        server): a request to a provider is what the limits are for. Raises ``CircuitBreakerException`` (the span is
        marked blocked and the request must not be sent). Nothing to do for any other call."""
        monitors = self.monitors_when_sent
        if monitors is None or self.ended:
            return
        if provider is not None and _runs_here(None, provider):
            return
        self.monitors_when_sent = None
        try:
            self._admission = admit_call(monitors, self.span.trace_id, None, self.span.kind)
        except CircuitBreakerException as blocked:
            self._refuse(blocked)

    def _refuse(self, blocked: CircuitBreakerException) -> NoReturn:
        """A lower layer's refusal of this call: the span marked blocked, the block raised as the framework has it
        raised (``raise_refusal_as``)."""
        mark_blocked(self.span, blocked)
        refused_as = self._refused_as
        if refused_as is None:
            raise blocked
        raise _refusal(refused_as, blocked) from None

    def refusal(self, error: BaseException) -> CircuitBreakerException | None:
        """The block that refused this call (a lower layer's ``top_up``), if ``error`` is it or wraps it: a framework
        between that layer and the plugin may map it to an error of its own (LiteLLM's ``InternalServerError``, with
        the block as its cause). None for any other error, and for a block in the chain that is not this call's (one
        the program was handling when it made the call)."""
        if self.span.status != "blocked":
            return None
        seen = 0
        cause: BaseException | None = error
        while cause is not None and seen < 8:
            if isinstance(cause, CircuitBreakerException):
                return cause
            cause = cause.__cause__ or cause.__context__
            seen += 1
        return None

    def raise_refusal_as(self, wrap: Callable[[CircuitBreakerException], CircuitBreakerException]) -> None:
        """Have a lower layer's refusal of this call (``top_up``) raised as ``wrap(block)``.

        For the framework that opened the call: the lower layer (the HTTP tap inside the provider SDK) raises
        below the framework's own code, which may retry a plain ``CircuitBreakerException`` or count it as a
        provider error; the framework's plugin knows which exception that code lets through as a deliberate stop
        (CrewAI: a ``HookAborted``). ``wrap`` may also end the call (it is marked blocked already)."""
        self._refused_as = wrap

    def set_input(self, value: Any) -> None:
        if self._client is not None and capturing(self._client):
            self.span.input = value

    def set_output(self, value: Any) -> None:
        if self._client is not None and capturing(self._client):
            self.span.output = value

    def mark_first_token(self, at_unix_nano: int | None = None) -> None:
        """The first token arrived (now, or at ``at_unix_nano`` if the caller noted the time)."""
        attributes = self.span.attributes
        if "time_to_first_token_ms" not in attributes:
            arrived = at_unix_nano or _time_ns()
            attributes["time_to_first_token_ms"] = (arrived - self.span.start_time_unix_nano) / 1e6

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.attributes[key] = value

    def set_fallback_price(self, price: Callable[[Span], float | None], source: str) -> None:
        """A second price source for models the price table does not know (a framework's own cost map).

        ``price(span)`` is asked at ``end()`` only if the table would charge the unknown-model default; a
        float (USD) is charged instead, and ``cost.source`` on the span names ``source``. With a fallback set,
        every priced span says where its price came from (``genai-prices``, ``source`` or ``default``).
        """
        self._fallback_price = (price, source)

    def _price_as_answered(self, client: Client, cost: float) -> tuple[float, bool]:
        """The model asked for is unknown to the price table and to a framework's own map (an Azure deployment's own
        name, a proxy's alias): priced as the model that answered, if the table knows that one (``priced_as``)."""
        span = self.span
        answered = span.attributes["response_model"]
        if answered.__class__ is not str:
            return cost, True
        priced, estimated = (client.price if client._has_price else client.pricer.cost)(
            answered, span.provider, span.input_tokens, span.output_tokens, span.cached_input_tokens, self._cache_write)
        if estimated:
            return cost, True
        attributes = span.attributes
        attributes["priced_as"] = answered
        if span.model:
            client.pricer.note_answered(span.model, span.provider, answered)  # a hard budget reserves it next time
        if "cost.source" in attributes:  # a fallback price was asked first and had none
            attributes["cost.source"] = client.pricer.rates(answered, span.provider).source
        return priced, False

    def _extra_cost(self, client: Client) -> float:
        """Billable units and the 1-hour cache writes' premium, at the rates of the model that priced the call."""
        span = self.span
        model = span.attributes.get("priced_as") or span.model
        units = dict(self._units or {})
        hour = units.pop(_HOUR_WRITES, 0)
        return client.pricer.extra_cost(model, span.provider, span.input_tokens, hour, units or None)

    def _price_with_fallback(self, client: Client, cost: float, estimated: bool) -> tuple[float, bool]:
        span = self.span
        price, source = self._fallback_price  # type: ignore[misc]  # only called when it is set
        if not estimated:
            span.attributes["cost.source"] = client.pricer.rates(span.model or "", span.provider).source
            return cost, estimated
        try:
            fallback = price(span)
        except Exception:  # a framework's cost map failing must not break the call: the default stands
            logger.exception("agentwatch: fallback price %s failed (ignored)", source)
            fallback = None
        if fallback.__class__ not in (int, float) or not 0 <= fallback < float("inf"):  # type: ignore[operator]
            span.attributes["cost.source"] = "default"
            return cost, estimated
        span.attributes["cost.source"] = source
        return float(fallback), False

    # ---- context ------------------------------------------------------------------------------

    def activate(self) -> None:
        """Make this call the current span and LLM call of the context (for child spans and dedupe)."""
        tokens = (set_current_span(self.span), set_current_llm_call(self))
        self._tokens = tokens if self._tokens is None else self._tokens + tokens

    def deactivate(self) -> None:
        tokens = self._tokens
        if tokens is None:
            return
        self._tokens = None
        if len(tokens) == 2:  # activated once: the usual call, without the loop
            try:
                reset_current_llm_call(tokens[1])
            except ValueError:  # reset from another context (callback frameworks); nothing to undo here
                pass
            try:
                reset_current_span(tokens[0])
            except ValueError:
                pass
            return
        for token in reversed(tokens):
            try:
                token.var.reset(token)
            except ValueError:
                pass

    def __enter__(self) -> LLMCall:
        self.activate()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.deactivate()
        self.end(error=error)

    async def __aenter__(self) -> LLMCall:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(kind, error, tb)

    # ---- finishing ----------------------------------------------------------------------------

    def end(self, error: BaseException | str | None = None, *, finish_reason: str | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        span = self.span
        attributes = span.attributes
        if finish_reason:
            attributes["finish_reason"] = finish_reason
        failed = False  # counts as an error in the breaker's windows (a block does not: nothing was sent)
        # A call a top-up refused (marked blocked) sent nothing: whatever error the refusal became in the layers
        # above (a framework's own exception, its message) leaves it blocked and counts no failure.
        if error is not None and span.status != "blocked":
            if isinstance(error, CircuitBreakerException):  # refused by a top-up: nothing was sent
                mark_blocked(span, error)
            else:
                span.record_error(error)
                # A cancellation, an exit or a closed generator (not an Exception) stopped the caller, not the
                # provider: recorded on the span, not counted toward max_error_rate (a chat UI's "stop" would trip it).
                failed = isinstance(error, Exception) or not isinstance(error, BaseException)  # or a message
        client = self._client
        if client is None:
            span.finish()
            return
        now = _time_ns()
        if self._estimate is not None or self._unanswered is not None:
            self._apply_estimate()
        input_tokens = span.input_tokens
        output_tokens = span.output_tokens
        if input_tokens or output_tokens:
            if "usage_missing" in attributes:  # one layer lacked usage, another reported it
                del attributes["usage_missing"]
            # Client.price without its frame when no plugin prices calls (the usual case).
            cost, estimated = (client.price if client._has_price else client.pricer.cost)(
                span.model, span.provider, input_tokens, output_tokens, span.cached_input_tokens, self._cache_write)
            if self._fallback_price is not None:
                cost, estimated = self._price_with_fallback(client, cost, estimated)
            if estimated and "response_model" in attributes:
                cost, estimated = self._price_as_answered(client, cost)
            if self._units is not None:  # never for the usual call
                cost += self._extra_cost(client)
            span.cost_usd = cost
            if estimated:
                attributes["cost_estimated"] = True
        attributes["latency_ms"] = (now - span.start_time_unix_nano) / 1e6
        admission = self._admission
        if admission is not None:
            cost = span.cost_usd
            if admission.__class__ is tuple and len(admission) == 1 and cost.__class__ is float and 0.0 <= cost < _INF:
                # settle_call's usual case inlined (the global monitor alone, holding nothing for the call, a clean
                # cost): ~950 machine instructions a call less than calling it (callgrind).
                monitor = admission[0]
                monitor._submit((monitor._clock(), cost, failed))
            else:
                settle_call(admission, cost, failed)
                if isinstance(admission, Admission) and cost > admission.reserved > 0.0:
                    note_settlement(span.model, span.provider, cost, admission.reserved)
        client.end_span(span, now)

    def withdraw(self, reason: str) -> None:
        """End a call that was not sent after all: a check after AgentWatch's (a framework hook of the user's)
        refused it once ``start_llm_call`` had admitted it. Its admission is undone in every monitor (not a call
        of the calls-per-minute window, no error, its reservation and any probe slot freed); its span ends
        ``blocked`` with ``reason`` (not a call, and not AgentWatch's block: no ``breaker.*``). Idempotent with
        ``end``."""
        if self.ended:
            return
        self.ended = True
        span = self.span
        span.status = "blocked"
        span.attributes["reason"] = reason
        if self._admission is not None:
            withdraw(self._admission)
        client = self._client
        if client is None:
            span.finish()
        else:
            client.end_span(span)

    def discard(self) -> None:
        """Forget a call that was not sent and is opened again in its place (a plugin that learns of more agent scopes
        after it opened it): its admission is undone in every monitor, as by ``withdraw``, and its span is not
        exported."""
        if self.ended:
            return
        self.ended = True
        self.span.finish()
        if self._admission is not None:
            withdraw(self._admission)

    def _apply_estimate(self) -> None:
        span = self.span
        if span.input_tokens or span.output_tokens:
            return  # the provider's usage arrived after all
        if self._estimate is not None:
            span.input_tokens, span.output_tokens = self._estimate
        else:  # no answer at all: the prompts of the requests sent unanswered
            prompts = self._unanswered[1] if self._unanswered is not None else 0
            if not prompts:
                return
            span.input_tokens = prompts
        attributes = span.attributes
        attributes.pop("usage_missing", None)
        attributes["usage_estimated"] = True
        attributes["cost_estimated"] = True


def _refusal(wrap: Callable[[CircuitBreakerException], CircuitBreakerException],
             blocked: CircuitBreakerException) -> CircuitBreakerException:
    """The refusal as the plugin has it raised; an internal error of the plugin's ``wrap`` is logged and the block
    itself raised (never the plugin's error: only a block reaches the program)."""
    try:
        return wrap(blocked)
    except CircuitBreakerException as raised:  # a wrap that raises its block instead of returning it
        return raised
    except Exception:
        logger.exception("agentwatch: internal error while raising a refusal (ignored; the block is raised)")
        return blocked


@stop_on_exception
def check_limits(*, scopes: Sequence[AgentScope] | None = None, trace_id: str | None = None,
                 budgets: Sequence[Monitor] = ()) -> None:
    """Raise ``CircuitBreakerException`` if an LLM call made now would be blocked; counts nothing.

    Called by the program itself (no ``scopes``), it asks about the call it is about to make: with N calls of a
    ``max_calls_per_minute`` of N made in the minute, it raises (that call would be blocked) without tripping the
    breaker (nothing was attempted). A framework boundary where work that may call an LLM is about to start (a
    LangGraph node, a crew's kickoff) passes the agent scopes of that work (``scopes=``, possibly empty): it is
    stopped by a limit that is over (a budget spent, a breaker open), not by a calls-per-minute limit merely reached,
    as the work may make no call.
    """
    client = _client_module._active
    if client is None:
        return
    if deferred_work:
        run_deferred()  # a stream dropped unfinished is charged before this check
    next_call = scopes is None
    if scopes or budgets or (SCOPED and (get_agent_scopes() or get_run_monitors())):
        check(_monitors(client, scopes or (), budgets), trace_id=trace_id, next_call=next_call)
    else:  # no agent scope, no run budget (the common node): the global monitor alone, as in start_llm_call
        monitor = client.monitor
        if monitor._pending_calls is not None and monitor._state is CLOSED:
            return  # no limit set (plain init()): nothing can block, as check() finds (~2.5k instructions less)
        check((monitor,), trace_id=trace_id, next_call=next_call)


def _end_blocked(client: Client, span: Span, blocked: CircuitBreakerException) -> None:
    mark_blocked(span, blocked)
    client.end_span(span)


@stop_on_exception
def record_blocked(blocked: CircuitBreakerException, name: str = "llm", *, model: str | None = None,
                   provider: str | None = None, kind: str = "llm", attributes: dict[str, Any] | None = None,
                   scopes: Sequence[AgentScope] = ()) -> None:
    """Record the ``blocked`` span of work that ``check_limits`` stopped before it was opened (a router checked once
    before its retries and fallbacks, an agent's run stopped at its start: ``kind="agent"``), as ``start_llm_call``
    records one it blocks itself. ``scopes``: the agent scopes passed to ``check_limits``; the span is the innermost
    one's (default: the context's)."""
    client = _client_module._active
    if client is None:
        return
    context_scopes = get_agent_scopes()
    agent = scopes[-1] if scopes else context_scopes[-1] if context_scopes else None
    span = client.start_span(name, kind, attributes=attributes, agent=agent)
    span.model, span.provider = model, provider
    _end_blocked(client, span, blocked)


def start_llm_call(
    name: str = "llm",
    # Not keyword-only, though meant to be passed by name: CPython fills each keyword-only parameter a caller leaves
    # out from a dict of defaults, one lookup each (callgrind: ~1.9k instructions a call with the SDK layer's five
    # keywords, ~1.05k with these plain parameters; every LLM call starts here).
    model: str | None = None,
    provider: str | None = None,
    parent: Span | None = None,
    scopes: Sequence[AgentScope] = (),
    kind: str = "llm",
    input: Any = None,
    attributes: dict[str, Any] | None = None,
    check: bool = True,
    reserve: float | Callable[[], float] | None = None,
    budgets: Sequence[Monitor] = (),
    request_body: Any = NO_BODY,
    count_local: bool = True,
) -> LLMCall:
    """Check every enclosing limit, then open the LLM span.

    Raises ``CircuitBreakerException`` (after recording a ``blocked`` span) if a breaker blocks: the
    caller must not send the request. ``scopes`` adds agent scopes the plugin knows of (e.g. a
    LangGraph node mapped to an agent) to those of the context; ``budgets`` adds per-run budget monitors
    (a LangGraph thread's). ``reserve`` is the request's worst-case cost in USD, or a function computing it
    (called only when a scope has a hard budget). ``request_body`` instead of ``reserve``: the request about to be
    sent (a JSON object), whose worst-case cost is computed (only) then: every string's UTF-8 bytes as input tokens
    (a byte-level tokenizer never makes more tokens than bytes) plus the request's output cap (``max_tokens`` and the
    like, else the model's limit: ``output_token_cap``), priced as the call would be.

    ``count_local=False``: a call of a model that runs here (a local runtime or a test double, which the price table
    prices at $0: ``is_free(model, provider)``) is recorded but neither checked nor counted (no call of the
    calls-per-minute window, no outcome, never a HALF_OPEN probe): it costs nothing and reaches no provider. If a lower
    layer sends a request for it after all, ``LLMCall.before_sending`` checks and counts it then.
    """
    client = _client_module._active
    if client is None:
        span = Span(name, kind, model=model, provider=provider, attributes=attributes)
        return LLMCall(span, None, None)
    if deferred_work:
        run_deferred()  # a stream dropped unfinished is charged before this call is checked
    # The context's agent scopes are read once, for the span's agent and for the monitors to check (none, and no run
    # budget, in any context until one is set: SCOPED).
    if SCOPED:
        context_scopes, runs = get_agent_scopes(), get_run_monitors()
    else:
        context_scopes = runs = ()
    if scopes:
        agent: AgentScope | None = scopes[-1]
    else:
        agent = context_scopes[-1] if context_scopes else None
    span = client._open_span(name, kind, get_current_span() if parent is None else parent, attributes, agent, model,
                            provider)
    otel_span = current_otel_span()
    if otel_span is not None:
        span.attributes[OTEL_SPAN_KEY] = otel_span
    if call_attributes_used:
        inherited = get_call_attributes()
        if inherited:
            own = span.attributes
            for key, value in inherited.items():
                own.setdefault(key, value)  # the call's own attributes win
    admission: Admission | tuple[Monitor, ...] | None = None
    if check:
        try:
            if scopes or context_scopes or runs or budgets:
                monitors = tuple(_monitors(client, scopes, budgets))
            else:  # no agent scope (the common case): the global monitor alone, without building the list
                monitor = client.monitor
                monitors = (monitor,)
                pending = monitor._pending_calls
                if pending is not None and count_local and monitor._state is CLOSED:
                    # admit_call's first case inlined (no limit set: nothing can block, the admission is only noted),
                    # the call of plain init(): ~950 machine instructions a call less than calling it (callgrind).
                    pending.append(monitor._clock())
                    if len(pending) >= CATCH_UP_EVERY:
                        monitor._catch_up()
                    admission = monitors
            if admission is None:
                if not count_local and _runs_here(model, provider):
                    call = LLMCall(span, client, None)
                    call.monitors_when_sent = monitors
                    if input is not None:
                        call.set_input(input)
                    return call
                if request_body is not NO_BODY and reserve is None:
                    for monitor in monitors:
                        if monitor._hard:  # only a hard budget reserves the request's worst case: priced then
                            reserve = estimator(client, model, provider, request_body, kind)
                            break
                admission = admit_call(monitors, span.trace_id, reserve, kind)
        except CircuitBreakerException as blocked:
            _end_blocked(client, span, blocked)
            raise
        except Exception as error:  # an internal error lets the call through unchecked, not break the host
            if any(isinstance(error, kind) for kind in PASS_THROUGH):
                raise
            logger.exception("agentwatch: internal error in admit (ignored)")
    call = LLMCall(span, client, admission)
    if input is not None:
        call.set_input(input)
    return call


#: ``_pricing.is_free``, bound by the first call that asks (``_runs_here``): the price table is loaded then, not at
#: import, and no call after it runs an import statement.
_is_free: Callable[[str | None, str | None], bool] | None = None


def _runs_here(model: str | None, provider: str | None) -> bool:
    """Whether ``model`` or ``provider`` runs on this machine (priced at $0: a local runtime, a test double)."""
    global _is_free
    if _is_free is None:
        from ._pricing import is_free

        _is_free = is_free
    return _is_free(model, provider)


#: Span attribute: True on the span where a block happened (the refused call, the agent or node stopped at its start),
#: False on the enclosing spans it ended blocked on its way out. The collector counts one block per True.
BLOCK_POINT = "breaker.block_point"


def _recorded(blocked: CircuitBreakerException) -> bool:
    """Whether a span is already where ``blocked`` happened: it, or the block it was made from (a plugin's copy for its
    framework, raised while handling the original: ``__context__``, with the same ``state`` snapshot), was marked.
    A block the program was handling when the call was refused anew has a snapshot of its own: not this one."""
    state = blocked.state
    error: BaseException | None = blocked
    for _ in range(8):
        if error is None:
            return False
        if isinstance(error, CircuitBreakerException) and error.state is state and error._recorded:
            return True
        error = error.__cause__ or error.__context__
    return False


def mark_blocked(span: Span, blocked: CircuitBreakerException) -> None:
    span.status = "blocked"
    attributes = span.attributes
    attributes.update({"breaker.reason": blocked.reason, "breaker.scope": blocked.scope,
                       "breaker.scope_id": blocked.scope_id, "breaker.threshold": blocked.threshold,
                       "breaker.current": blocked.current})
    if blocked.reserved is not None:
        attributes["breaker.reserved"] = blocked.reserved
        attributes["breaker.remaining"] = blocked.remaining
    if _recorded(blocked):
        attributes[BLOCK_POINT] = False
    else:
        blocked._recorded = True
        attributes[BLOCK_POINT] = True


def end_span(span: Span, error: BaseException | str | None = None) -> None:
    """End a span a plugin opened with ``Client.start_span`` and export it (idempotent). With ``error``: status
    ``blocked`` and the breaker's details for a ``CircuitBreakerException``, else ``error`` and its type and
    message. Before ``init()`` (or after ``shutdown()``) the span is only marked ended."""
    if span.ended:  # already ended (and maybe exported): it stays as it was first ended
        return
    if isinstance(error, BlockCarrier):  # a block on its way past a framework's except clause
        error = error.blocked
    if isinstance(error, CircuitBreakerException):
        if span.status != "blocked":
            mark_blocked(span, error)
    elif error is not None:
        span.record_error(error)
    client = _client_module._active
    if client is not None:
        client.end_span(span)
    else:
        span.finish()


def llm_call(name: str = "llm", **kwargs: Any) -> LLMCall:
    """Context-manager spelling for manual instrumentation: ``with agentwatch.llm_call(model=...) as call:``."""
    return start_llm_call(name, **kwargs)
