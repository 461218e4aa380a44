"""The blocking layer for classic AG2: ``OpenAIWrapper.create`` opens an LLM call before anything is sent.

Every LLM request of a classic ``autogen`` program goes through ``OpenAIWrapper.create``: agents'
replies, reflection summaries, group-chat speaker selection, direct wrapper use. The call is checked
there, is the current LLM call while AG2 and the provider SDK work (so AG2's runtime logging, read in
``_runtime_log``, and an HTTP-level tap below add to it instead of counting again), and is ended with
the outcome, including exceptions that AG2 never logs (timeouts, other providers' errors).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from agentwatch.instrumentation import (
    LLMCall,
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

from ._agents import charged_agent, open_span_of

__all__ = ["wrap_create", "watch_wrapper", "unwatch_wrapper", "record_response", "CACHE_HIT"]

_WATCHED = "_agentwatch_watched"
#: Set by the runtime log when AG2 answered from its cache: nothing was sent, nothing is spent.
CACHE_HIT = "cache_hit"


def _first_config(wrapper: Any) -> dict[str, Any]:
    configs = getattr(wrapper, "_config_list", None)
    return configs[0] if isinstance(configs, list) and configs and isinstance(configs[0], dict) else {}


def _base_url(wrapper: Any, config: dict[str, Any]) -> Any:
    """The base URL the first client sends to: AG2 moves ``base_url`` out of the config into its client."""
    if config.get("base_url") is not None:
        return config["base_url"]
    clients = getattr(wrapper, "_clients", None)
    first = clients[0] if isinstance(clients, list) and clients else None
    return getattr(getattr(first, "_oai_client", None), "base_url", None)


def _provider(wrapper: Any, config: dict[str, Any]) -> str | None:
    """The core rule on the client's base URL (``init(providers=...)``, known hosts), else its ``api_type``
    (the wire format: "responses" is OpenAI's)."""
    api_type = str(config.get("api_type") or "openai").lower()
    base_url = _base_url(wrapper, config)
    return provider_for_url(None if base_url is None else str(base_url),
                            "openai" if api_type == "responses" else api_type)


@stop_on_exception
def _begin(wrapper: Any, config: dict[str, Any]) -> LLMCall | None:
    client = get_client()
    if client is None:
        return None
    first = _first_config(wrapper)
    agent = charged_agent(config.get("agent"))
    agent_name = getattr(agent, "name", None)
    scopes: tuple[Any, ...] = ()
    parent = None
    if agent_name and not any(scope.name == agent_name for scope in get_current_agent_scopes()):
        # A call made off the agent's context (AG2 runs async replies in an executor thread).
        scopes = (client.agent_scope(str(agent_name), role=type(agent).__name__),)
    if get_current_span() is None and agent is not None:
        parent = open_span_of(agent)
    messages = config.get("messages")
    return start_llm_call(
        "OpenAIWrapper", model=config.get("model") or first.get("model"), provider=_provider(wrapper, first),
        parent=parent, scopes=scopes,
        input=messages if capturing(client) and messages is not None else None,
        attributes={"framework": "ag2"},
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
    span = call.span
    # The runtime log already recorded it, or it was a cache hit (nothing sent, nothing spent).
    if not (span.attributes.get(CACHE_HIT) or span.input_tokens or span.output_tokens):
        record_response(call, response)
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


def _create(original: Callable[..., Any], wrapper: Any, config: dict[str, Any]) -> Any:
    if get_client() is None or get_current_llm_call() is not None:
        return original(wrapper, **config)
    call = _begin(wrapper, config)  # may raise CircuitBreakerException: nothing is sent
    if call is None:
        return original(wrapper, **config)
    call.activate()
    try:
        response = original(wrapper, **config)
    except BaseException as error:
        call.deactivate()
        _finish(call, None, error)
        raise
    call.deactivate()
    _finish(call, response, None)
    return response


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
