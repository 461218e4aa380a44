"""Hook specifications for AgentWatch plugins.

Framework plugins (LangChain, CrewAI, ...) and exporters implement these with ``@agentwatch.hookimpl``
and are found through the ``agentwatch.plugins`` entry-point group. Hooks are always called with
keyword arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._breaker_contract import BlockEvent
    from ._client import Client
    from ._config import Config
    from ._span import Span
    from .instrumentation import Price

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME"]

PROJECT_NAME = "agentwatch"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------------
# Instrumentation


@hookspec(historic=True)
def agentwatch_instrument(client: Client) -> None:
    """Install this plugin's instrumentation (patches, callbacks, listeners) into its framework.

    Called by ``agentwatch.init()`` once the framework the plugin declares in ``AGENTWATCH_REQUIRES``
    has been imported (at ``init()`` if it already is, otherwise from the import hook when it is).
    Historic: a plugin registered after ``init()`` is instrumented on registration.

    :param client: The running client; read its ``config`` and record through its API.
    """


@hookspec
def agentwatch_uninstrument(client: Client) -> None:
    """Remove everything ``agentwatch_instrument`` installed.

    Called by ``agentwatch.shutdown()``. After it, the framework must behave as if AgentWatch had
    never been there, so that a later ``init()`` starts clean.
    """


@hookspec(historic=True)
def agentwatch_configure(config: Config) -> None:
    """Receive the validated configuration after ``agentwatch.init()`` parsed it.

    Historic: a plugin registered later (for a framework imported late) is called as well.
    """


# -------------------------------------------------------------------------------------------------
# Spans


@hookspec
def agentwatch_span_start(span: Span) -> None:
    """Called when a span starts, on the thread that started it.

    Runs on the hot path: do no I/O and return quickly.
    """


@hookspec
def agentwatch_span_end(span: Span) -> None:
    """Called when a span ends, before it is queued for export.

    Runs on the hot path: do no I/O and return quickly. The span may still be amended here
    (attributes, cost) but not re-ended.
    """


# -------------------------------------------------------------------------------------------------
# Pricing


@hookspec(firstresult=True)
def agentwatch_price(
    model: str, provider: str | None, input_tokens: int, output_tokens: int, cached_input_tokens: int,
    cache_write_tokens: int,
) -> Price | float | None:
    """Price one LLM call in USD: its cost as a number (USD), or ``Price(cost_usd, estimated=False)`` (from
    ``agentwatch.instrumentation``; ``estimated=True`` flags the span ``cost_estimated``).

    ``input_tokens`` includes ``cached_input_tokens`` and ``cache_write_tokens`` (the OpenAI
    convention; plugins normalise other providers before calling). Return ``None`` to let the next
    implementation (finally the user's ``cost_table_override`` and the genai-prices table) answer. Stops at the
    first non-None result. Anything else (a negative or infinite cost, a tuple, a string) is an error of the plugin:
    logged, and the next implementation answers. Runs on the hot path, when a call ends: no I/O.
    """


# -------------------------------------------------------------------------------------------------
# Export


@hookspec(firstresult=True)
def agentwatch_make_exporter(name: str, config: Config) -> Any:
    """Build the exporter named ``name`` in ``init(exporters=[...])``, or return None if unknown.

    An exporter has ``export(spans: list[dict]) -> bool``, ``force_flush(timeout) -> bool`` and
    ``shutdown() -> None``. A third-party package adds one by an entry point in ``agentwatch.plugins``.
    """


@hookspec
def agentwatch_export(spans: list[dict[str, Any]]) -> None:
    """Receive a batch of finished spans (``Span.to_dict()`` form) on the export worker thread.

    For plugins that want to see every span without being an exporter. May do I/O; must not block
    for long, since it delays the batch for the other exporters.
    """


# -------------------------------------------------------------------------------------------------
# Alerts and the circuit breaker


@hookspec
def agentwatch_alert(alert: dict[str, Any]) -> None:
    """Called for each alert: a breaker limit violation (not suppressed by the 60 s cooldown) or
    ``agentwatch.alert()``. Keys: ``reason``, ``scope``, ``scope_id``, ``threshold``, ``current``,
    ``state`` (and ``severity``/``message`` for manual alerts)."""


@hookspec
def agentwatch_before_block(event: BlockEvent) -> bool | None:
    """A call is about to be blocked: ``event.monitor`` blocks it, and its own ``on_block`` (if any) did not recover
    it. Called on the caller's thread and in its context, before ``CircuitBreakerException`` is raised, at most once
    per call and monitor. For a framework plugin that can recover the monitor from what its framework holds there
    (the LangChain plugin: a human's answer to the graph's pause for this block, given on resume). Return True if
    you changed anything: the call is then checked again (a runaway loop's blocked calls are not checked twice for
    nothing). Only blocked calls pay for it.
    """


@hookspec
def agentwatch_breaker_transition(record: dict[str, Any]) -> None:
    """Called for every circuit-breaker state transition.

    Keys: ``event`` (triggered, paused, half_open, recovered, retrip, budget_increased, reset),
    ``from_state``, ``to_state``, ``scope``, ``scope_id``, ``reason``, ``threshold``, ``current``,
    ``eu_ai_act_art12_relevant``.
    """
