"""The public surface for plugin authors: everything a framework or exporter plugin records through.

A plugin is a module with ``@hookimpl`` functions (see ``agentwatch.hookspecs``) found through the
``agentwatch.plugins`` entry-point group; ``docs/plugin-guide.md`` walks through one. The built-in plugins use
only this module and ``agentwatch`` (an import contract in ``pyproject.toml`` keeps it so), so a third-party
plugin can do whatever they do. Names follow OpenTelemetry's API (``get_current_span``, ``attach`` /
``detach``) and pluggy's (``hookimpl``, ``register_plugin``).

- LLM calls: ``start_llm_call`` checks every enclosing limit *before* the request leaves and raises
  ``CircuitBreakerException`` (after recording a ``blocked`` span) if one blocks; ``LLMCall.end`` prices the
  call and records its cost in every enclosing monitor. ``check_limits`` asks the same question at a
  framework boundary (a graph node, a router) without opening a call. A ``Monitor`` made with
  ``store=RunBudgetStore()`` reads its ``budget_per_hour`` as a total with no time window (a per-run budget);
  ``attach_run_budget`` makes one (``run_budget``) enclose the code a framework runs, as ``trace(budget=...)`` does.
- Usage is in the OpenAI convention (input tokens *include* cached ones): ``normalize_openai_usage`` reads
  OpenAI's usage objects, ``normalize_anthropic_usage`` converts Anthropic's; ``estimate_tokens`` /
  ``estimate_request_tokens`` estimate a call that reports none. What a provider bills per unit besides tokens
  (``BILLABLE_UNITS``: web searches) is given with ``LLMCall.set_billable``. A plugin that knows what its calls
  cost (a negotiated rate, a self-hosted model) implements ``agentwatch_price`` and answers a number of USD or a
  ``Price``.
- Spans and context: ``get_client().start_span`` opens a span, ``end_span`` ends it; ``attach`` / ``detach``
  make a span, an LLM call or an agent scope current for the code a framework runs (``attach_call_attributes``: the
  attributes every LLM call made there carries, whichever layer records it); ``save_current`` /
  ``restore_current`` put back the current span and LLM call after a framework's entry point, cheaply;
  ``carry`` takes this context's AgentWatch values to code run on another thread (and nothing else of it);
  ``open_frame`` / ``stepped`` / ``call_in_frame`` keep a span and agent current only while a framework's own code
  runs, step by step for an async generator (an agent's run that the caller iterates).
- Exporters that POST to a receiver: ``HttpSender`` sends with keep-alive, gzip and retries; subclassing
  ``SpoolingExporter`` (``body``, ``content_type``) gives the collector's outage handling, with the ``Spool`` that
  ``spool_for(url, config)`` makes from ``spool_dir``: a receiver that is down costs a flush one attempt, not a
  retry budget, and what it missed is delivered from disk when it answers. An exporter to a tracing backend may
  offer ``remote_parent()``: the (trace id, span id) current in the program in that backend; a root span opened
  then takes its trace id and names it under ``REMOTE_PARENT_KEY``, for the exporter to make it the parent.
- Never break the host: wrap every callback in ``stop_on_exception``; only ``CircuitBreakerException``
  (and what ``add_pass_through`` adds) reaches user code. Code a finaliser may run (``__del__``, a generator's
  ``finally``; ``collecting_garbage()`` tells, between ``watch_collections()`` and ``unwatch_collections()`` around
  the time such code is open) ends nothing itself: it hands the work to ``defer``, run at the next safe point (the
  garbage collector may run it while this thread holds a lock that ending a call takes).
  A block must reach the program past a framework's ``except Exception``: ``BlockCarrier`` takes it past one that
  plugin code raises it under; ``BlocksMet`` keeps the blocks raised under framework code that keeps only an error's
  text (a tool executor's ``"Error: ..."``), to raise the one it made text again above it.
"""

from __future__ import annotations

from ._blocks_met import BlocksMet
from ._breaker import CircuitBreakerException, Monitor
from ._capture import TEXT_LIMIT, bounded, capturing, clip
from ._client import (
    Client,
    get_client,
    init_provisional,
)
from ._client import (
    register_process_plugin as register_plugin,
)
from ._client import (
    unregister_process_plugin as unregister_plugin,
)
from ._config import Config, validate_agent_limits
from ._context import (
    KEEP,
    SESSION_KEY,
    AgentScope,
    Carried,
    attach,
    attach_call_attributes,
    carry,
    detach,
    restore_current,
    save_current,
)
from ._context import current_agent_scopes as get_current_agent_scopes
from ._context import current_span as get_current_span
from ._deferred import collecting_garbage, defer
from ._deferred import unwatch as unwatch_collections
from ._deferred import watch as watch_collections
from ._estimate import estimate_request_tokens, estimate_text_bytes, estimate_tokens
from ._exporters import HttpSender, SpoolingExporter
from ._frames import Frame, call_in_frame, finish_frame, open_frame, stepped
from ._llm import (
    LLMCall,
    Usage,
    check_limits,
    enclosing_monitors,
    end_span,
    llm_call,
    normalize_anthropic_usage,
    normalize_openai_usage,
    record_blocked,
    run_budget,
    start_llm_call,
)
from ._llm import current_llm_call as get_current_llm_call
from ._plugins import imported_module
from ._pricing import BILLABLE_UNITS, Price
from ._providers import (
    ProviderTable,
    adopt_registered,
    normalise_base,
    provider_for_host,
    provider_for_url,
    providers_of,
)
from ._reservation import output_token_cap, remember_carried_tokens
from ._run_budget import RunBudgetStore, attach_run_budget
from ._safe import BlockCarrier, add_pass_through, logger, stop_on_exception, swallow_internal_error
from ._span import REMOTE_PARENT_KEY, Span
from ._spool import Spool, spool_for
from .hookspecs import hookimpl

__all__ = [
    # plugins (pluggy)
    "hookimpl",
    "register_plugin",
    "unregister_plugin",
    "init_provisional",
    "get_client",
    "Client",
    "Config",
    # LLM calls and limits
    "start_llm_call",
    "llm_call",
    "LLMCall",
    "check_limits",
    "record_blocked",
    "get_current_llm_call",
    "CircuitBreakerException",
    # usage
    "Usage",
    "normalize_openai_usage",
    "normalize_anthropic_usage",
    "estimate_tokens",
    "estimate_text_bytes",
    "estimate_request_tokens",
    "output_token_cap",
    "remember_carried_tokens",
    "BILLABLE_UNITS",
    # pricing plugins (agentwatch_price)
    "Price",
    # spans, context and scopes
    "Span",
    "REMOTE_PARENT_KEY",
    "end_span",
    "get_current_span",
    "attach",
    "attach_call_attributes",
    "detach",
    "save_current",
    "restore_current",
    "carry",
    "Carried",
    "KEEP",
    "SESSION_KEY",
    "AgentScope",
    "get_current_agent_scopes",
    # frames: a span and agent current only while a framework's own code runs (step by step in async generators)
    "Frame",
    "open_frame",
    "stepped",
    "call_in_frame",
    "finish_frame",
    "validate_agent_limits",
    "Monitor",
    "enclosing_monitors",
    "run_budget",
    "attach_run_budget",
    "RunBudgetStore",
    # never break the host
    "defer",
    "collecting_garbage",
    "imported_module",
    "watch_collections",
    "unwatch_collections",
    "stop_on_exception",
    "swallow_internal_error",
    "add_pass_through",
    "BlockCarrier",
    "BlocksMet",
    "logger",
    # exporters (a receiver's outage handled as for the collector: spool, known down, one attempt per flush)
    "HttpSender",
    "SpoolingExporter",
    "Spool",
    "spool_for",
    # text capture (one rule: capture_messages and no zero data retention; kept text bounded at TEXT_LIMIT)
    "capturing",
    "clip",
    "bounded",
    "TEXT_LIMIT",
    # providers named from URLs (init(providers=...), known hosts)
    "provider_for_url",
    "providers_of",
    "adopt_registered",
    "ProviderTable",
    "provider_for_host",
    "normalise_base",
]
