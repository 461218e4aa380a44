"""The blocking layer for classic AG2: each request ``OpenAIWrapper.create`` sends is an LLM call, checked first.

Every LLM request of a classic ``autogen`` program goes through ``OpenAIWrapper.create``: agents'
replies, reflection summaries, group-chat speaker selection, direct wrapper use. ``create`` tries the configs of
its ``config_list`` in turn (in ``routing_method`` order), each with its own client: a config answered from AG2's
cache (``cache_seed``, ``cache=``) sends nothing, a config whose request fails hands over to the next. So the call
is opened where a config's client sends (``ModelClient.create``, after the cache was looked in), named and priced
as that config's model, and checked there against every enclosing limit; it is the current LLM call while the
client works (so an HTTP-level tap below adds to it instead of counting again). A cache hit is recorded, from
AG2's completion report (``_runtime_log``), as a ``cache_hit`` span that costs $0 and that no limit counts or
blocks. The call is ended with the outcome, including exceptions that AG2 never reports (timeouts, other
providers' errors), and with AG2's own cost figure when its report of the completion comes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from agentwatch.instrumentation import (
    LLMCall,
    Span,
    capturing,
    get_client,
    get_current_agent_scopes,
    get_current_llm_call,
    get_current_span,
    logger,
    normalize_openai_usage,
    provider_for_url,
    start_llm_call,
    stop_on_exception,
)
from agentwatch.plugins.autogen._patching import ORIGINAL

from ._agents import charged_agent, open_span_of

__all__ = ["wrap_create", "watch_wrapper", "unwatch_wrapper", "record_response", "CACHE_HIT", "observe_completion",
           "set_class_patching", "forget_client_classes"]

_WATCHED = "_agentwatch_watched"
#: A span attribute: AG2 answered from its cache (nothing sent, nothing spent, no limit counts it).
CACHE_HIT = "cache_hit"


class _Create:
    """One ``OpenAIWrapper.create`` in flight: what its calls are charged to, and the request sent last until AG2
    reports it (``observe_completion``), the next config is tried, or ``create`` returns."""

    __slots__ = ("wrapper", "messages", "agent_scopes", "parent", "sent", "response")

    def __init__(self, wrapper: Any, messages: Any, agent_scopes: tuple[Any, ...], parent: Span | None) -> None:
        self.wrapper = wrapper
        self.messages = messages
        self.agent_scopes = agent_scopes
        self.parent = parent
        self.sent: LLMCall | None = None
        self.response: Any = None


_IN_CREATE: ContextVar[_Create | None] = ContextVar("agentwatch_ag2_create", default=None)


# ---- which config a client serves ---------------------------------------------------------------------


def _config_of(wrapper: Any, model_client: Any) -> dict[str, Any]:
    """The ``config_list`` entry of the client (AG2 keeps them in the same order)."""
    clients = getattr(wrapper, "_clients", None)
    configs = getattr(wrapper, "_config_list", None)
    if isinstance(clients, list) and isinstance(configs, list):
        for index, candidate in enumerate(clients):
            if candidate is model_client and index < len(configs) and isinstance(configs[index], dict):
                return configs[index]
    return {}


def _base_url(model_client: Any, config: dict[str, Any]) -> Any:
    """The base URL the client sends to: AG2 moves ``base_url`` out of the config into its client."""
    if config.get("base_url") is not None:
        return config["base_url"]
    return getattr(getattr(model_client, "_oai_client", None), "base_url", None)


def _provider(model_client: Any, config: dict[str, Any]) -> str | None:
    """The core rule on the client's base URL (``init(providers=...)``, known hosts), else its ``api_type``
    (the wire format: "responses" is OpenAI's)."""
    api_type = str(config.get("api_type") or "openai").lower()
    base_url = _base_url(model_client, config)
    return provider_for_url(None if base_url is None else str(base_url),
                            "openai" if api_type == "responses" else api_type)


# ---- one create: what its calls are charged to ---------------------------------------------------------


@stop_on_exception
def _open_create(wrapper: Any, config: dict[str, Any]) -> _Create | None:
    client = get_client()
    if client is None:
        return None
    agent = charged_agent(config.get("agent"))
    agent_name = getattr(agent, "name", None)
    scopes: tuple[Any, ...] = ()
    parent = None
    if agent_name and not any(scope.name == agent_name for scope in get_current_agent_scopes()):
        # A call made off the agent's context (AG2 runs async replies in an executor thread).
        scopes = (client.agent_scope(str(agent_name), role=type(agent).__name__),)
    if get_current_span() is None and agent is not None:
        parent = open_span_of(agent)
    return _Create(wrapper, config.get("messages"), scopes, parent)


def _model_of(params: Any, config: dict[str, Any]) -> str | None:
    """The model a config's request asks for: its params', else the config's."""
    model = params.get("model") if isinstance(params, dict) else None
    model = model or config.get("model")
    return model if isinstance(model, str) and model else None


@stop_on_exception
def _begin(create: _Create, model_client: Any, params: Any) -> LLMCall | None:
    """Open the call of one config's request (may raise ``CircuitBreakerException``: nothing is sent)."""
    client = get_client()
    if client is None:
        return None
    config = _config_of(create.wrapper, model_client)
    messages = params.get("messages") if isinstance(params, dict) else None
    if messages is None:
        messages = create.messages
    streaming = bool(params.get("stream")) if isinstance(params, dict) else False
    return start_llm_call(
        "OpenAIWrapper", model=_model_of(params, config), provider=_provider(model_client, config),
        parent=create.parent, scopes=create.agent_scopes,
        input=messages if capturing(client) and messages is not None else None,
        attributes={"framework": "ag2", "streaming": streaming},
    )


def record_response(call: LLMCall, response: Any) -> None:
    """Served model and usage (OpenAI convention: AG2 normalises every provider to ChatCompletion)."""
    model = getattr(response, "model", None)
    if isinstance(model, str) and model and model != call.span.model:
        if call.span.model is None:
            call.set_model(model)
        else:
            call.set_attribute("response_model", model)
    usage = getattr(response, "usage", None)
    if usage is None:
        return
    call.set_usage(**normalize_openai_usage(usage))


@stop_on_exception
def _finish(call: LLMCall, response: Any, error: BaseException | None) -> None:
    if error is not None:
        call.end(error=error)
        return
    finish_reason = None
    choices = getattr(response, "choices", None)
    if choices:
        finish_reason = getattr(choices[0], "finish_reason", None)
        message = getattr(choices[0], "message", None)
        tool_calls = getattr(message, "tool_calls", None) if message is not None else None
        if tool_calls:
            names = [getattr(getattr(tool_call, "function", None), "name", None) for tool_call in tool_calls]
            call.set_attribute("tool_calls", names)
        call.set_output(getattr(message, "content", None) if message is not None else None)
    call.end(finish_reason=finish_reason)


def _end_sent(create: _Create) -> None:
    """End the request sent last (its outcome is in): AG2 reported it, or moved on, or ``create`` is over."""
    call = create.sent
    if call is not None:
        create.sent = None
        _finish(call, create.response, None)
        create.response = None


# ---- AG2's report of a completion ----------------------------------------------------------------------


@stop_on_exception
def observe_completion(response: Any, is_cached: int, cost: Any) -> None:
    """AG2's report of what a config answered (``log_chat_completion``): a cache hit, a failed request (a string:
    "error_code:..., config i failed"; its call ended with the error already) or the completion of the request
    sent last, which ends its call with AG2's own cost figure."""
    create = _IN_CREATE.get()
    if create is None:
        return
    if is_cached:
        _record_cache_hit(create, response)
        return
    call = create.sent
    if call is None or isinstance(response, str):
        return
    if isinstance(cost, int | float):
        call.set_attribute("ag2.cost_usd", float(cost))
    _end_sent(create)


def _record_cache_hit(create: _Create, response: Any) -> None:
    """A config answered from AG2's cache: nothing was sent. A span of the cached answer's model that costs $0 and
    is checked against and counted by no limit."""
    client = get_client()
    if client is None:
        return
    model = getattr(response, "model", None)
    messages = create.messages
    call = start_llm_call(
        "OpenAIWrapper", model=model if isinstance(model, str) and model else None,
        parent=create.parent, scopes=create.agent_scopes,
        input=messages if capturing(client) and messages is not None else None,
        attributes={"framework": "ag2", CACHE_HIT: True}, check=False,
    )
    _finish(call, response, None)


# ---- the request of one config ---------------------------------------------------------------------------


def _send(original: Callable[..., Any], model_client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    create = _IN_CREATE.get()
    if create is None or get_current_llm_call() is not None or get_client() is None:
        return original(model_client, *args, **kwargs)
    _end_sent(create)  # a request before this one that AG2 did not report (its filter refused the answer)
    params = args[0] if args else kwargs.get("params")
    call = _begin(create, model_client, params)  # may raise CircuitBreakerException: nothing is sent
    if call is None:
        return original(model_client, *args, **kwargs)
    call.activate()
    try:
        response = original(model_client, *args, **kwargs)
    except BaseException as error:
        call.deactivate()
        _finish(call, None, error)
        raise
    call.deactivate()
    stop_on_exception(record_response)(call, response)
    create.sent, create.response = call, response
    return response


def _wrap_send(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _send(original, self, args, kwargs)

    return create


#: Zero-config: the ``create`` of each model client class met in a watched ``OpenAIWrapper`` is wrapped in its class
#: (undone by ``forget_client_classes``); otherwise (explicit ``watch``) on the client itself.
_class_patching = False
_patched_classes: list[tuple[type, Callable[..., Any], Callable[..., Any]]] = []
_seen_classes: set[type] = set()


def set_class_patching(on: bool) -> None:
    global _class_patching
    _class_patching = on


def forget_client_classes() -> None:
    while _patched_classes:
        owner, original, wrapper = _patched_classes.pop()
        if owner.__dict__.get("create") is wrapper:
            owner.create = original  # type: ignore[attr-defined]
    _seen_classes.clear()


def _patch_class(kind: type) -> None:
    _seen_classes.add(kind)
    owner = next((cls for cls in kind.__mro__ if "create" in cls.__dict__), None)
    if owner is None:
        return
    original = owner.__dict__["create"]
    if not inspect.isfunction(original) or hasattr(original, ORIGINAL):
        return
    wrapper = _wrap_send(original)
    setattr(wrapper, ORIGINAL, original)
    owner.create = wrapper  # type: ignore[attr-defined]
    _patched_classes.append((owner, original, wrapper))


def _patch_instance(model_client: Any) -> None:
    state = getattr(model_client, "__dict__", None)
    if state is None or state.get(_WATCHED):
        return
    kind = type(model_client)

    def create(*args: Any, **kwargs: Any) -> Any:
        return _send(kind.create, model_client, args, kwargs)

    state["create"] = create
    state[_WATCHED] = True


@stop_on_exception
def _watch_clients(wrapper: Any) -> None:
    """Make each config's client open its call when it sends (AG2 may register a custom client at any time)."""
    clients = getattr(wrapper, "_clients", None)
    for model_client in clients if isinstance(clients, list) else ():
        kind = type(model_client)
        if _class_patching:
            if kind not in _seen_classes:
                _patch_class(kind)
        elif not hasattr(getattr(kind, "create", None), ORIGINAL):  # explicit watch, zero-config off
            _patch_instance(model_client)


def _unwatch_clients(wrapper: Any) -> None:
    clients = getattr(wrapper, "_clients", None)
    for model_client in clients if isinstance(clients, list) else ():
        state = getattr(model_client, "__dict__", None)
        if state is not None and state.pop(_WATCHED, False):
            state.pop("create", None)


# ---- OpenAIWrapper.create --------------------------------------------------------------------------------


def _create(original: Callable[..., Any], wrapper: Any, config: dict[str, Any]) -> Any:
    if get_client() is None or get_current_llm_call() is not None:
        return original(wrapper, **config)
    create = _open_create(wrapper, config)
    if create is None:
        return original(wrapper, **config)
    _watch_clients(wrapper)
    token = _IN_CREATE.set(create)
    try:
        return original(wrapper, **config)
    finally:
        _IN_CREATE.reset(token)
        _end_sent(create)


def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(self: Any, **config: Any) -> Any:
        return _create(original, self, config)

    return create


def watch_wrapper(wrapper: Any) -> None:
    """Wrap one ``OpenAIWrapper`` instance (explicit attach); never counted twice with zero-config."""
    state = getattr(wrapper, "__dict__", None)
    if state is None:
        logger.warning("agentwatch: cannot watch %r (no instance dictionary)", type(wrapper).__name__)
        return
    if state.get(_WATCHED):
        return
    kind = type(wrapper)

    def create(**config: Any) -> Any:
        return _create(kind.create, wrapper, config)

    state["create"] = create
    state[_WATCHED] = True


def unwatch_wrapper(wrapper: Any) -> None:
    state = getattr(wrapper, "__dict__", None)
    if state is not None and state.pop(_WATCHED, False):
        state.pop("create", None)
        _unwatch_clients(wrapper)
