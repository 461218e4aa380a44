"""The client behind ``agentwatch.init()``: configuration, plugins, monitors and the export pipeline."""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _fingerprint, _warning_origin
from ._agent_ids import agent_id_from_name as _slug
from ._breaker import BlockEvent, CircuitBreakerException, Monitor
from ._capture import bound_text
from ._client_structure import StructureAPI
from ._context import (
    SCOPED,
    SESSION_KEY,
    AgentScope,
    get_agent_scopes,
    get_current_span,
    get_metadata,
    get_session_id,
)
from ._deferred import install as install_collection_watch
from ._deferred import pending as deferred_work
from ._deferred import run_deferred
from ._deferred import uninstall as uninstall_collection_watch
from ._export import BatchProcessor, Exporter
from ._exporters import HttpExporter
from ._forking import after_fork_in_child, fork_safe_lock
from ._limits_backend import window_store_for
from ._remote_control import OPERATOR_ACTION
from ._remote_control import attach as attach_remote_control
from ._safe import logger, stop_on_exception, swallow_internal_error
from ._span import REMOTE_PARENT_KEY, Span, open_span
from ._start_up import collections_held, freeze_start_up_objects, release_collections

if TYPE_CHECKING:
    from ._config import Config

#: Agent scopes a process keeps before it forgets idle ones (``Client._let_idle_agents_go``).
AGENT_SCOPES_KEPT = 10_000
#: How many agent names and runners the warning of ``agents`` keys that named no agent lists (of the first seen).
_NAMES_LISTED = 50

# Configuration, pluggy (with _plugins and hookspecs) and pricing are imported by init(), not by
# ``import agentwatch``: a program that only imports (a library decorating its functions) does not pay for them.

__all__ = ["Client", "init", "init_provisional", "shutdown", "get_client", "get_state", "register_process_plugin",
           "unregister_process_plugin"]

_lock = fork_safe_lock(sys.modules[__name__], "_lock", threading.RLock)
_time_ns = time.time_ns
_active: Client | None = None
#: Plugins registered into every client, including ones created later (e.g. by a test's own init()).
_process_plugins: dict[str, Any] = {}


def _remote_parent_source(exporters: Sequence[Exporter]) -> Callable[[], tuple[str, str] | None] | None:
    """The first exporter's optional ``remote_parent()``: the (trace id, span id) of the span current in the
    program in that exporter's backend (OpenTelemetry's), or None. Asked only when a root span opens."""
    for exporter in exporters:
        source = getattr(exporter, "remote_parent", None)
        if callable(source):
            return stop_on_exception(source)
    return None


class _BreakerSink:
    """Turns breaker transitions and alerts into spans and hook calls (the audit trail)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def transition(self, monitor: Monitor, record: dict[str, Any]) -> None:
        client = self._client
        attributes = dict(record)
        attributes.setdefault("eu_ai_act_art12_relevant", True)
        operator = OPERATOR_ACTION.get()
        if operator is not None:  # made by an operator's action from the collector: who, which, why
            attributes.update(operator)
        span = client.start_span(f"breaker.{record.get('event')}", "breaker", attributes=attributes,
                                 activate=False, agent=self._agent_of(monitor))
        client.end_span(span)
        client.plugin_manager.hook.agentwatch_breaker_transition(record=dict(record))

    def alert(self, monitor: Monitor, alert: dict[str, Any]) -> None:
        client = self._client
        span = client.start_span(f"alert.{alert.get('reason')}", "alert", attributes=dict(alert), activate=False,
                                 agent=self._agent_of(monitor))
        client.end_span(span)
        client.plugin_manager.hook.agentwatch_alert(alert=dict(alert))

    def _agent_of(self, monitor: Monitor) -> AgentScope | None:
        """An agent's own monitor: that agent, whichever agent the context is in (a coworker blocked inside the
        delegating agent's tool, which pushed the delegator). None for another monitor: the context's agent."""
        if monitor.scope != "agent":
            return None
        scope = self._client._agents.get(monitor._name)
        return scope if scope is not None and scope.monitor is monitor else None

    def blocked(self, error: CircuitBreakerException) -> None:
        # The LLM-call layer records the blocked span itself: it knows the model and the parent.
        pass

    def recover(self, event: BlockEvent) -> bool:
        """Before a block is raised, on the caller's thread and in its context: the plugins may recover the monitor
        (``agentwatch_before_block``). True if one says it changed something (the call is then checked again)."""
        client = self._client
        if not client._has_before_block:
            return False
        return any(client.plugin_manager.hook.agentwatch_before_block(event=event))


class Client(StructureAPI):
    """One per process while initialised. Framework plugins record through its methods."""

    def __init__(self, config: Config) -> None:
        from ._plugins import PluginManager, PostImportHooks, discover, required_modules
        from ._pricing import Pricer

        self.config = config
        self.enabled = config.enabled
        self.started_at = time.time()
        self.plugin_manager = PluginManager()
        self.pricer = Pricer(config.cost_table_override)
        self.instrumented: list[str] = []
        self.provisional = False
        self._import_hooks = PostImportHooks()
        self._sink = _BreakerSink(self)
        self._agents: dict[str, AgentScope] = {}
        self._declared: dict[str, dict[str, Any]] = {}
        #: Each scope's limits as its declarations left them: a scope whose monitor differs (a grant, an operator's
        #: limits) is not let go when idle (``_let_idle_agents_go``).
        self._declared_limits: dict[str, tuple[Any, ...]] = {}
        self._agents_checked_at = AGENT_SCOPES_KEPT
        #: Monitors of forgotten scopes, for as long as something (a context, a call) still holds them.
        self._forgotten: weakref.WeakValueDictionary[str, Monitor] = weakref.WeakValueDictionary()
        self._agents_lock = fork_safe_lock(self, "_agents_lock")
        #: What frameworks said they run (``note_agent_names``): the ``agents`` keys some agent matched, and (a few, for
        #: the warning at ``close``) the agents' names and what ran them.
        self._keys_named: set[str] = set()
        self._names_run: dict[str, None] = {}
        self._runners: dict[str, None] = {}
        global_id = config.agent_name or "global"
        self.monitor = Monitor(
            "global", global_id, store=window_store_for(config, "global", global_id),
            budget_per_hour=config.budget_per_hour, max_error_rate=config.max_error_rate,
            max_calls_per_minute=config.max_calls_per_minute, block_on_threshold=config.block_on_threshold,
            hard_budget=config.hard_budget, on_alert=config.on_alert, on_block=config.on_block, sink=self._sink,
        )
        from . import _builtin_exporters

        self.plugin_manager.register(_builtin_exporters, name="builtin-exporters")
        self._framework_plugins: list[tuple[str, Any]] = []
        if self.enabled:
            # Plugins that need no framework (exporters, listeners) are registered before exporters are built.
            for name, plugin in discover(config.disabled_plugins):
                if required_modules(plugin):
                    self._framework_plugins.append((name, plugin))
                else:
                    self.register_plugin(plugin, name)
        for name, plugin in list(_process_plugins.items()):
            self.register_plugin(plugin, name)
        self.exporters = self._make_exporters(config.exporters) if self.enabled else []
        self._remote_parent = _remote_parent_source(self.exporters)
        #: An exporter sends to the program's OpenTelemetry backend: scopes are current there too (``_otel_current``).
        self.otel_scopes = self._remote_parent is not None
        stop_on_exception(attach_remote_control)(self)
        # Before the worker starts: its first batch reads these flags.
        self._refresh_hook_flags()
        self.processor = BatchProcessor(
            self.exporters, max_queue_size=config.max_queue_size, max_queue_bytes=config.max_queue_bytes,
            max_batch_size=config.max_batch_size,
            flush_interval=config.flush_interval, on_batch=self._on_batch, reads_batches=self._reads_batches,
            on_start=self._on_worker_start,
            start=False,
        )
        if self.enabled:
            # Only now: the worker's first act records the process span through self.processor.
            self.processor.start()

    # ---- set-up -------------------------------------------------------------------------------

    def _make_exporters(self, specs: Sequence[Any]) -> list[Exporter]:
        exporters: list[Exporter] = []
        for spec in specs:
            if isinstance(spec, str):
                exporter = self.plugin_manager.hook.agentwatch_make_exporter(name=spec, config=self.config)
                if exporter is None:
                    raise ValueError(f"exporters: unknown exporter name {spec!r}")
                exporters.append(exporter)
            elif callable(getattr(spec, "export", None)):
                exporters.append(spec)
            else:
                raise TypeError(f"exporters: {spec!r} is neither an exporter name nor an object with export()")
        return exporters

    def start_plugins(self) -> None:
        """Register entry-point plugins; instrument frameworks now or when they are imported."""
        pm = self.plugin_manager
        pm.hook.agentwatch_configure.call_historic(kwargs={"config": self.config})
        self._drop_failed_plugins()
        # Historic: a plugin registered later (its framework imported after init) is instrumented then.
        pm.hook.agentwatch_instrument.call_historic(kwargs={"client": self})
        self._drop_failed_plugins()
        if not self.config.auto_instrument:
            return
        for name, plugin in self._framework_plugins:
            self._register_once_imported(plugin, name)

    def _register_once_imported(self, plugin: Any, name: str, _module: ModuleType | None = None) -> None:
        """Register ``plugin`` once every module it requires is imported: now, or when the first of those still
        missing is imported (then asked again, for the others)."""
        from ._plugins import imported_module, required_modules

        for module in required_modules(plugin):
            if imported_module(module) is None:
                self._import_hooks.when_imported(module, functools.partial(self._register_once_imported, plugin, name))
                return
        self.register_plugin(plugin, name)

    def when_imported(self, module_name: str, callback: Callable[[ModuleType], None]) -> None:
        """Call ``callback(module)`` once ``module_name`` is imported: now if it is, else right after its import
        completes (in the importing thread), unless this client shuts down first. For a plugin that patches or hooks
        into a module its framework imports only when first used, without importing it itself (an import the program
        would not make yet, or never). An error of ``callback`` is logged, not raised into the importing code.

        A module another thread is importing is waited for. One this thread is importing (asked for from inside its own
        import: one of its imports led here) is not imported yet: its callback runs when that import completes, or,
        where the import began before the module was watched, at the first import of any module after it."""
        self._import_hooks.when_imported(module_name, callback)

    @stop_on_exception
    def register_plugin(self, plugin: Any, name: str | None = None) -> None:
        if self.plugin_manager.is_registered(plugin):
            return
        self.plugin_manager.register(plugin, name=name)
        if self._drop_failed_plugins():  # its configure or instrument, replayed to it on registration, raised
            return
        self.instrumented.append(name or str(getattr(plugin, "__name__", repr(plugin))))
        self._refresh_hook_flags()
        logger.debug("agentwatch: plugin %s active", name)

    def _drop_failed_plugins(self) -> bool:
        """Take out the plugins whose ``agentwatch_configure`` or ``agentwatch_instrument`` raised (logged where it
        raised, ``_guarded_hooks``), as if they were not installed; one whose instrumentation failed half way has its
        own ``agentwatch_uninstrument`` remove what it installed. True if there were any."""
        pm = self.plugin_manager
        if not pm.failed:
            return False
        while pm.failed:
            plugin, hook = pm.failed.pop()
            name = pm.get_name(plugin)
            if name is None:
                continue
            if hook == "agentwatch_instrument":
                others = [other for other in pm.get_plugins() if other is not plugin]
                pm.subset_hook_caller("agentwatch_uninstrument", others)(client=self)
            pm.unregister(plugin)
            if name in self.instrumented:
                self.instrumented.remove(name)
        self._refresh_hook_flags()
        return True

    def _refresh_hook_flags(self) -> None:
        hook = self.plugin_manager.hook
        self._has_span_start = bool(hook.agentwatch_span_start.get_hookimpls())
        self._has_span_end = bool(hook.agentwatch_span_end.get_hookimpls())
        self._has_price = bool(hook.agentwatch_price.get_hookimpls())
        self._has_export = bool(hook.agentwatch_export.get_hookimpls())
        self._has_before_block = bool(hook.agentwatch_before_block.get_hookimpls())
        # Spans nobody will read (``exporters=[]`` and no export hook) are not queued: that would cost the
        # export worker a to_dict per span, and the program's thread the GIL meanwhile, for nothing.
        self._queue_spans = self.enabled and (self._has_export or bool(getattr(self, "exporters", ())))

    def _on_worker_start(self) -> None:
        # Metadata-heavy work happens on the worker, not in init() or the hot path.
        if self.enabled:
            _fingerprint.record(self)

    def _on_batch(self, spans: list[dict[str, Any]]) -> None:
        if self._has_export:
            self.plugin_manager.hook.agentwatch_export(spans=spans)

    def _reads_batches(self) -> bool:
        """Whether ``_on_batch`` reads the batches' records (a plugin implements the export hook)."""
        return self._has_export

    # ---- agents -------------------------------------------------------------------------------

    def agent_scope(self, name: str, *, role: str | None = None, agent_id: str | None = None,
                    **limits: Any) -> AgentScope:
        """The one scope for this agent name: created on first use.

        Limits passed again unchanged (every ``with agent(...)`` of a loop) leave the monitor alone, so a
        recovery such as ``increase_budget`` is not undone; different limits replace the declared ones.
        """
        if not limits:
            # An agent's every run asks for its scope (AutoGen's, LlamaIndex's, a graph node's): one that exists, asked
            # for without limits, is taken without the lock (a dict's read is atomic) and the two comprehensions below.
            known = self._agents.get(name)
            if known is not None and (not role or role == known.role):
                return known
        preset = self.config.agents.get(name, {})
        given = {key: value for key, value in limits.items() if value is not None}
        with self._agents_lock:
            scope = self._agents.get(name)
            if scope is None and (monitor := self._forgotten.pop(name, None)) is not None:
                # Forgotten while a context still held it (a long request, a call in flight): the same monitor, or
                # the work of one name would be counted by two.
                scope = AgentScope(name, monitor.scope_id, role or preset.get("role") or "Agent", monitor)
                self._agents[name] = scope
                self._declared[name] = {key: getattr(monitor, key, None) for key in given}
                self._declared_limits[name] = monitor.limits()
            if scope is None:
                settings = {**{k: v for k, v in preset.items() if k not in ("role", "agent_id")}, **given}
                # init(block_on_threshold=..., hard_budget=..., on_alert=..., on_block=...) are an agent's defaults:
                # init(block_on_threshold=True, agents={"Researcher": {"budget_per_hour": 1.0}}) blocks the
                # researcher, not only alerts, and the program's hooks hear of it.
                config = self.config
                settings.setdefault("block_on_threshold", config.block_on_threshold)
                settings.setdefault("hard_budget", config.hard_budget)
                settings.setdefault("on_alert", config.on_alert)
                settings.setdefault("on_block", config.on_block)
                scope_id = agent_id or preset.get("agent_id") or _slug(name)
                monitor = Monitor("agent", scope_id, sink=self._sink, name=name,
                                  store=window_store_for(self.config, "agent", scope_id), **settings)
                scope = AgentScope(name, monitor.scope_id, role or preset.get("role") or "Agent", monitor)
                if len(self._agents) >= self._agents_checked_at:
                    self._let_idle_agents_go()
                self._agents[name] = scope
                self._declared[name] = given
                self._declared_limits[name] = monitor.limits()
                return scope
            changed = {key: value for key, value in given.items() if self._declared[name].get(key) != value}
            if changed:
                self._declared[name] = {**self._declared[name], **changed}
        if changed:
            scope.monitor.update(**changed)
            with self._agents_lock:
                self._declared_limits[name] = scope.monitor.limits()
        if role and role != scope.role:
            scope = AgentScope(scope.name, scope.agent_id, role, scope.monitor)
        return scope

    def _let_idle_agents_go(self) -> None:
        """Forget the scopes that would be made anew as they are: idle (``Monitor.idle``), their limits as declared,
        not configured in ``agents``. A service that scopes each of its users otherwise keeps one monitor per user
        it ever served, and reports them all to the collector. Checked again only after as many more scopes."""
        presets = self.config.agents
        for name, scope in list(self._agents.items()):
            if name not in presets and scope.monitor.limits() == self._declared_limits[name] and scope.monitor.idle():
                del self._agents[name], self._declared[name], self._declared_limits[name]
                self._forgotten[name] = scope.monitor
        self._agents_checked_at = len(self._agents) + AGENT_SCOPES_KEPT

    @property
    def agents(self) -> Mapping[str, AgentScope]:
        return dict(self._agents)

    def note_agent_names(self, names: Sequence[str], where: str) -> None:
        """A framework is about to run agents that ``names`` name (every name one of them would match, e.g. the roles
        of a crew); ``where`` says what runs them ("CrewAI crew 'Research'"). At ``close`` an ``init(agents=...)`` key
        that none of them nor any agent scope ever matched is warned of (a typo, a renamed role: its limits applied
        to nothing). Not at a kickoff: a program or a Flow may run one crew's agents, then another's."""
        configured = self.config.agents
        if not configured:
            return
        with self._agents_lock:
            self._keys_named.update(name for name in names if name in configured)
            for name in names:
                if len(self._names_run) < _NAMES_LISTED:
                    self._names_run[name] = None
            if len(self._runners) < _NAMES_LISTED:
                self._runners[where] = None

    def _warn_unmatched_agents(self) -> None:
        if not self._runners:
            return  # no framework said which agents it runs: a key may name a scope the program has yet to open
        with self._agents_lock:
            unmatched = [key for key in self.config.agents if key not in self._keys_named and key not in self._agents]
        names = ", ".join(map(repr, self._names_run)) or "none"
        for key in unmatched:
            logger.warning("agentwatch: init(agents=...) set limits for %r, but no agent of that name ran (the agents "
                           "of the %s: %s); its limits applied to nothing", key, ", ".join(self._runners), names)

    # ---- spans --------------------------------------------------------------------------------

    def start_span(self, name: str, kind: str = "span", *, parent: Span | None = None, attributes:
                   dict[str, Any] | None = None, activate: bool = True, new_trace: bool = False,
                   agent: AgentScope | None = None) -> Span:
        """Open a span under ``parent`` (default: the current span). ``activate`` is for callers that
        manage the context themselves (the context managers in ``_api``)."""
        if parent is None and not new_trace:
            parent = get_current_span()
        if agent is None and SCOPED:
            scopes = get_agent_scopes()
            if scopes:
                agent = scopes[-1]
        return self._open_span(name, kind, parent, attributes, agent, None, None)

    def _open_span(self, name: str, kind: str, parent: Span | None, attributes: dict[str, Any] | None,
                  agent: AgentScope | None, model: str | None, provider: str | None) -> Span:
        """``start_span`` with everything given (the parent, the agent: no context read for them), positionally:
        the LLM-call path, which has already read the context."""
        if kind == "trace" and parent is not None and parent.kind == "session" and parent.parent_span_id is None:
            # A session opened outside any trace groups traces: a trace() in it (a conversation's turn, a run and its
            # retry) is a trace of its own with the session's id, not a branch of one trace holding them all.
            parent = None
        if parent is None:
            span = open_span(name, kind, None, None, model, provider, attributes)
            if self._remote_parent is not None:
                remote = self._remote_parent()
                if remote is not None:
                    # The trace the program is in (an OpenTelemetry span of its web request): ours join it. The
                    # parent is kept aside for the exporter that knows it; to the collector this stays a root.
                    span.trace_id, span.attributes[REMOTE_PARENT_KEY] = remote
        else:
            span = open_span(name, kind, parent.trace_id, parent.span_id, model, provider, attributes)
        if agent is not None:
            span.agent_id, span.agent_name, span.agent_role = agent.agent_id, agent.name, agent.role
        elif parent is not None and parent.agent_id is not None:
            span.agent_id, span.agent_name, span.agent_role = parent.agent_id, parent.agent_name, parent.agent_role
        session = None
        if SCOPED:  # else no context has metadata or a session (see SCOPED)
            metadata = get_metadata()
            if metadata:
                own = span.attributes.get("metadata")
                if own is None:
                    span.attributes["metadata"] = dict(metadata)
                elif isinstance(own, dict):  # a span's own metadata (a LangChain run's) wins per key
                    span.attributes["metadata"] = {**metadata, **own}
            session = get_session_id()
        # Sessions group traces: the enclosing session() names it, else the parent's (a resumed LangGraph thread).
        if session is None and parent is not None:
            session = parent.attributes.get(SESSION_KEY)
        if session is not None:
            span.attributes.setdefault(SESSION_KEY, session)
        if self._has_span_start:
            self.plugin_manager.hook.agentwatch_span_start(span=span)
        return span

    def end_span(self, span: Span, end_time_unix_nano: int | None = None) -> None:
        """End ``span`` (at ``end_time_unix_nano`` if the caller already read the clock) and queue it."""
        if span._ended:  # span.finish(end_time_unix_nano), inlined: every span ends here
            return
        span._ended = True
        span.end_time_unix_nano = end_time_unix_nano or _time_ns()
        if span.input is not None or span.output is not None:
            bound_text(span)  # once for every plugin, before the span is queued (see _capture)
        if self._has_span_end:
            self.plugin_manager.hook.agentwatch_span_end(span=span)
        if self._queue_spans:
            self.processor.enqueue(span)

    def price(self, model: str | None, provider: str | None, input_tokens: int, output_tokens: int,
              cached_input_tokens: int = 0, cache_write_tokens: int = 0) -> tuple[float, bool]:
        """USD cost and whether it is an estimate (unknown model priced at the default rate)."""
        if self._has_price and model:
            answer = self.plugin_manager.hook.agentwatch_price(
                model=model, provider=provider, input_tokens=input_tokens, output_tokens=output_tokens,
                cached_input_tokens=cached_input_tokens, cache_write_tokens=cache_write_tokens)
            if answer is not None:
                return answer.cost_usd, answer.estimated
        return self.pricer.cost(model, provider, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens)

    # ---- state and life cycle -------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {
            "initialized": True,
            "enabled": self.enabled,
            "proxy_url": self.config.proxy_url,
            "plugins": list(self.instrumented),
            "exporter": self.processor.stats(),
            "monitors": {
                "global": self.monitor.snapshot(),
                "agents": {name: scope.monitor.snapshot() for name, scope in self.agents.items()},
            },
        }

    def flush(self, timeout: float | None = 5.0) -> bool:
        from ._config import timeout_seconds  # not at import: ``import agentwatch`` leaves _config to init()

        timeout = timeout_seconds("flush()", timeout)
        if deferred_work:
            run_deferred()  # a dropped stream's call ends (and is exported) with what is flushed
        return self.processor.force_flush(timeout)

    def verify(self) -> bool:
        exporter = HttpExporter(self.config.proxy_url, api_key=self.config.api_key, timeout=3.0)
        try:
            return exporter.verify()
        finally:
            exporter.shutdown()

    def close(self, timeout: float | None = 5.0) -> None:
        from ._config import timeout_seconds

        timeout = timeout_seconds("shutdown()", timeout)
        run_deferred()
        stop_on_exception(self._warn_unmatched_agents)()
        self._import_hooks.uninstall()
        try:  # each plugin's implementation is guarded: one that raises does not keep the others in place
            self.plugin_manager.hook.agentwatch_uninstrument(client=self)
        except Exception:
            swallow_internal_error("agentwatch_uninstrument")
        for name, plugin in list(self.plugin_manager.list_name_plugin()):
            stop_on_exception(self.plugin_manager.unregister)(plugin, name)
        self.processor.shutdown(timeout)


def _configure_debug_logging(debug: bool) -> None:
    if not debug:
        return
    import logging

    if not any(getattr(h, "_agentwatch", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler._agentwatch = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s agentwatch %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


def init(**config: Any) -> Client:
    """Start AgentWatch (idempotent: a second call returns the running client)."""
    return _init(config, provisional=False)


def init_provisional(*, process_hooks: bool = True, **config: Any) -> Client:
    """Start a client that the program's own ``init()`` replaces instead of returning (used by tools).

    ``process_hooks=False`` leaves the process as the tool's host set it up: no SIGTERM handler, no
    ``sys``/``threading`` excepthooks, no ``gc.freeze()`` of the objects alive now (a test runner's tests may look
    for objects with ``gc.get_objects()`` or handle signals themselves). A program's own ``init()`` later still
    installs them."""
    return _init(config, provisional=True, process_hooks=process_hooks)


def _init(config: dict[str, Any], *, provisional: bool, process_hooks: bool = True) -> Client:
    held = collections_held()  # see _start_up: no full collection set off by our start-up's allocations
    try:
        return _start(config, provisional, process_hooks, held)
    finally:
        release_collections(held)


def _start(config: dict[str, Any], provisional: bool, process_hooks: bool, held: bool) -> Client:
    global _active
    from ._config import build_config

    parsed = build_config(config)
    with _lock:
        if _active is not None and _active.provisional and not provisional:
            shutdown()
        if _active is not None:
            if config and parsed != _active.config:
                logger.warning("agentwatch.init() called again with a different configuration; the running "
                               "client is kept (call agentwatch.shutdown() first to reconfigure)")
            return _active
        _configure_debug_logging(parsed.debug)
        client = Client(parsed)
        client.provisional = provisional
        if client.enabled:
            _active = client
            _warning_origin.install()
            client.start_plugins()
            install_collection_watch()
            if process_hooks:
                from . import _excepthook, _signals

                _excepthook.install(client)
                _signals.install(client)
                freeze_start_up_objects(held)
            _follow_multiprocessing_exit(started=True)
        return client


def shutdown(timeout: float | None = 5.0) -> None:
    """Remove every patch and hook, flush what is queued (up to ``timeout`` seconds; None: the default) and stop."""
    global _active
    if _active is None and (timeout is None or timeout.__class__ in (int, float)):
        return  # nothing to stop: the exit hook of a program that never called init() imports no configuration
    from ._config import timeout_seconds

    timeout = timeout_seconds("shutdown()", timeout)
    with _lock:
        client, _active = _active, None
    if client is None:
        return
    from . import _excepthook, _signals

    _excepthook.uninstall()
    _signals.uninstall()
    client.close(timeout)
    _warning_origin.uninstall()
    uninstall_collection_watch()


def register_process_plugin(plugin: Any, name: str) -> None:
    """Register ``plugin`` into the running client and every client created later in this process.

    For tools that outlive one ``init()``/``shutdown()`` cycle, such as the pytest plugin.
    """
    with _lock:
        _process_plugins[name] = plugin
        if _active is not None:
            _active.register_plugin(plugin, name)


def unregister_process_plugin(name: str) -> None:
    with _lock:
        plugin = _process_plugins.pop(name, None)
        if plugin is not None and _active is not None and _active.plugin_manager.is_registered(plugin):
            _active.plugin_manager.unregister(plugin)
            _active._refresh_hook_flags()


def get_client() -> Client | None:
    return _active


def get_state() -> dict[str, Any]:
    client = _active
    if client is None:
        return {"initialized": False, "enabled": False}
    return client.get_state()


atexit.register(stop_on_exception(shutdown))


# ---- multiprocessing children -----------------------------------------------------------------------------
# A multiprocessing worker started with "fork" or "forkserver" leaves through os._exit() once its target (or its
# pool's worker loop) returns: atexit, and the shutdown() above, never run there, and the spans it had not exported
# yet were lost. What it does run is multiprocessing's own exit: its finalizers (``multiprocessing.util.Finalize``
# with an exit priority). Such a child gets shutdown() as one. A child clears the finalizers it inherited before it
# starts its target and then calls the functions registered for after a fork (``register_after_fork``): that is where
# the finalizer is registered, for a client started before the fork (by the parent, by a forkserver, by the re-import
# of the main module in the child). multiprocessing is never imported for this: a process that starts a
# multiprocessing worker has imported it already.

#: Below multiprocessing's own finalizers (a queue's feeder is joined at -5): spans they cause are flushed too.
_EXIT_PRIORITY = -100
_finalizer_pid = 0


def _shut_down_at_multiprocessing_exit(_owner: object = None) -> None:
    global _finalizer_pid
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _active is not None and _finalizer_pid != os.getpid():
        _finalizer_pid = os.getpid()
        util.Finalize(None, stop_on_exception(shutdown), exitpriority=_EXIT_PRIORITY)


def _follow_multiprocessing_exit(started: bool) -> None:
    """``started``: a client was just started in this process (else: this process was just forked)."""
    util = sys.modules.get("multiprocessing.util")
    if util is None or _active is None:
        return
    util.register_after_fork(sys.modules[__name__], _shut_down_at_multiprocessing_exit)
    process = sys.modules.get("multiprocessing.process")
    if started and process is not None and process.parent_process() is not None:
        _shut_down_at_multiprocessing_exit()  # started in a child's target: its finalizers are not cleared again


after_fork_in_child(functools.partial(_follow_multiprocessing_exit, False))
