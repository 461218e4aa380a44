"""``AgentWatchHandler``: LangChain callbacks → AgentWatch spans, limit checks before calls and nodes."""

from __future__ import annotations

import sys
from asyncio import CancelledError
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

# From its own module, not the package's lazy names: imported while the callback manager's module finishes its import
# (``_plugin``), when older langchain-core's package is itself still being imported.
from langchain_core.callbacks.base import BaseCallbackHandler

import agentwatch
from agentwatch import CircuitBreakerException, Span
from agentwatch.instrumentation import (
    SESSION_KEY,
    AgentScope,
    Monitor,
    attach,
    capturing,
    clip,
    detach,
    enclosing_monitors,
    end_span,
    run_budget,
    start_llm_call,
    stop_on_exception,
    swallow_internal_error,
    validate_agent_limits,
)

from ._error_wrappers import FALLBACKS_MODULE, RETRY_MODULE, patch_imported_wrappers
from ._error_wrappers import PENDING as PENDING_WRAPPERS
from ._graph import allow_graph_control_flow, graph_block, interrupt_for_budget, is_control_flow, take_answer
from ._labels import SEEN_OWN_KEYS, add_labels
from ._messages import message_dicts, record_result
from ._patches import UNPATCHED_RUN_CONTEXTS, install_run_contexts
from ._patches import install as install_patches
from ._plugin import install_deferred
from ._runs import RUNS, Run, end_model_run, key_of, new_run, parent_key_of

if TYPE_CHECKING:  # not at run time: langchain_core.outputs imports its messages, which the handler has no need of
    from langchain_core.outputs import LLMResult

__all__ = ["AgentWatchHandler"]

#: LangGraph metadata kept on graph and node spans: (metadata key, span attribute), then ``thread_id`` (read once, for
#: its attribute and the session: ``_copy_node_metadata``). A later key wins: a node's own namespace
#: (``langgraph_checkpoint_ns``, ``review:<id>|draft:<id>`` in a subgraph) over ``checkpoint_ns``, which inside a
#: subgraph is the subgraph's (``review:<id>``).
_NODE_ATTRIBUTES = (("langgraph_node", "langgraph_node"), ("langgraph_step", "langgraph_step"),
                    ("langgraph_triggers", "langgraph_triggers"), ("langgraph_path", "langgraph_path"),
                    ("checkpoint_ns", "checkpoint_ns"), ("langgraph_checkpoint_ns", "checkpoint_ns"))
_LIMIT_KEYS = ("budget_per_hour", "max_error_rate", "max_calls_per_minute", "block_on_threshold", "on_alert",
               "on_block")


#: The attributes a model's span is opened with (``_start_model``), kept when it is opened again (``_adopt``).
_CALL_KEYS = frozenset({"langgraph_step", "langgraph_node", "streaming", "tags", "metadata"})

#: Runs LangGraph cancels when their graph's run stops: a node, a Functional API task.
_STOPPABLE = frozenset({"node", "task"})

_EMPTY: Mapping[str, Any] = {}
#: ``sys.modules`` (the one dict the import system fills), bound once: looked up on every chain start.
_MODULES = sys.modules
#: Values kept as they are (exact types; subclasses go through _jsonable's isinstance checks).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _is_task(metadata: Mapping[str, Any], parent: Run | None, name: str) -> bool:
    """A LangGraph Functional API task's run (``@task``, pushed by its entrypoint or another task), as opposed to a
    runnable inside it, or inside a node pushed by ``Send``, of the same name (which inherits its metadata and has its
    run for parent)."""
    path = metadata.get("langgraph_path") or ("",)
    return path[0] == "__pregel_push" and not (
        parent is not None and parent.span.kind in ("node", "task") and parent.span.name == name)


class AgentWatchHandler(BaseCallbackHandler):
    """Trace LangChain and LangGraph runs and enforce AgentWatch limits at nodes and model calls.

    ``agent``/``role``/limits put every run of this handler in one agent scope; ``agents`` maps
    LangGraph node names to agent scopes with their own limits. ``on_budget="raise"`` raises
    ``CircuitBreakerException`` to the caller; ``"interrupt"`` pauses the graph with ``interrupt()``.
    """

    # raise_error lets a block reach the caller with its own type (internal errors are swallowed by
    # stop_on_exception first); run_inline keeps the check on the caller's thread and context. An inline
    # handler hides a completion model's async start from every other handler in langchain-core, so
    # that one start is dispatched to us separately (_patches); every other handler sees what it would
    # see without us.
    raise_error = True
    run_inline = True

    def __init__(self, agent: str | None = None, role: str | None = None, agent_id: str | None = None, *,
                 budget_per_hour: float | None = None, max_error_rate: float | None = None,
                 max_calls_per_minute: int | None = None, block_on_threshold: bool | None = None,
                 on_alert: Callable[[dict[str, Any]], Any] | None = None, on_block: Callable[[Any], Any] | None = None,
                 agents: Mapping[str, Mapping[str, Any]] | None = None, on_budget: str = "raise",
                 thread_budget: float | None = None) -> None:
        if on_budget not in ("raise", "interrupt"):
            raise ValueError(f"on_budget must be 'raise' or 'interrupt', got {on_budget!r}")
        limits = {"budget_per_hour": budget_per_hour, "max_error_rate": max_error_rate,
                  "max_calls_per_minute": max_calls_per_minute, "block_on_threshold": block_on_threshold,
                  "on_alert": on_alert, "on_block": on_block}
        self._agent = agent
        self._agent_options = validate_agent_limits(
            f"AgentWatchHandler(agent={agent!r})",
            {k: v for k, v in {**limits, "role": role, "agent_id": agent_id}.items() if v is not None})
        if not agent and any(v is not None for v in limits.values()):
            raise ValueError("AgentWatchHandler: limits need an agent name (agent=...)")
        self._node_agents = {name: validate_agent_limits(f"agents[{name!r}]", dict(options))
                             for name, options in (agents or {}).items()}
        self._on_budget = on_budget
        # A per-run budget (USD, no time window) shared by every invoke and resume of one LangGraph thread_id.
        self._thread_budget = validate_agent_limits("AgentWatchHandler(thread_budget=...)",
                                                    {"budget_per_hour": thread_budget})["budget_per_hour"]
        allow_graph_control_flow()
        install_patches(AgentWatchHandler)

    def _thread_budgets(self, metadata: Mapping[str, Any]) -> tuple[Monitor, ...]:
        thread_id = metadata.get("thread_id") if self._thread_budget is not None else None
        if thread_id is None:
            return ()
        monitor = run_budget(f"thread:{thread_id}", self._thread_budget)
        return (monitor,) if monitor is not None else ()

    # ---- scopes and spans ---------------------------------------------------------------------

    def _own_scopes(self) -> tuple[AgentScope, ...]:
        if not self._agent:  # the zero-config handler: no scope of its own (every model call asks)
            return ()
        client = agentwatch.get_client()
        if client is None:
            return ()
        options = dict(self._agent_options)
        return (client.agent_scope(self._agent, role=options.pop("role", None),
                                   agent_id=options.pop("agent_id", None), **options),)

    def _node_scope(self, client: agentwatch.Client, node: str) -> tuple[AgentScope, ...]:
        """The node's agent scope: from this handler's ``agents`` map, or ``init(agents=...)`` by node name."""
        options = self._node_agents.get(node)
        if options is None:
            if node not in client.config.agents:
                return ()
            options = {}
        options = dict(options)
        return (client.agent_scope(node, role=options.pop("role", "node"), agent_id=options.pop("agent_id", None),
                                   **options),)

    def _open(self, client: agentwatch.Client, run_key: int, parent_key: int | None, name: str, kind: str,
              metadata: Mapping[str, Any] | None, extra_scopes: tuple[AgentScope, ...] = ()) -> Run | None:
        """Open the run's span under its parent run's (else the current span); None if already recorded. The run and
        its parent by their run ids' ``int`` (``RUNS``' keys)."""
        if run_key in RUNS:
            return None  # another handler instance already records this run
        parent = RUNS.get(parent_key) if parent_key is not None else None
        if parent is not None:
            scopes, parent_span, in_graph, budgets = parent.scopes, parent.span, parent.in_graph, parent.budgets
        else:
            scopes, parent_span, in_graph, budgets = (self._own_scopes() if self._agent else ()), None, False, ()
        if extra_scopes:
            scopes += extra_scopes
        # parent None: start_span takes the context's current span.
        span = client.start_span(name, kind, parent=parent_span, agent=scopes[-1] if scopes else None)
        # new_run, every field given (call and request None: not a model's run; parent None: only a model's is kept),
        # not the class called with keywords (which gets them in a dict, ~1.5k machine instructions more per run)
        run = new_run(span, scopes, None, in_graph or (metadata is not None and "langgraph_step" in metadata), None,
                      self._on_budget == "interrupt", budgets, None)
        RUNS[run_key] = run
        return run

    def _close(self, run_key: int, error: BaseException | None = None) -> Run | None:
        run = RUNS.pop(run_key, None)
        if run is None:
            return None
        # An interrupt or a drain: no error of the run. A block is one too for LangGraph (so that no RetryPolicy
        # retries it), not for the span: the run ends blocked.
        if error is not None and is_control_flow(error) and not isinstance(error, CircuitBreakerException):
            run.span.attributes["langgraph.control_flow"] = type(error).__name__
            error = None
        elif isinstance(error, GeneratorExit) or (isinstance(error, CancelledError) and run.span.kind in _STOPPABLE):
            # The caller left its stream (break), or LangGraph cancelled a node because its run stopped (the program
            # left the graph's stream, or cancelled it: the graph's span says so): stopped, not failed.
            run.span.attributes["cancelled"] = True
            error = None
        end_span(run.span, error)
        return run

    # ---- chains, graphs, nodes ----------------------------------------------------------------
    # The per-run callbacks (chains, model calls) catch internal errors inline, as ``stop_on_exception`` does,
    # without its extra frame and argument repacking: they run for every node and every model call.

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, name: str | None = None, **kwargs: Any) -> None:
        try:
            client = agentwatch.get_client()
            if client is None:
                return
            # RunnableRetry, RunnableWithFallbacks: patched before their first run reads it, once their module is
            # imported (looked up here: a call per chain start cost more than the lookups)
            if PENDING_WRAPPERS and (RETRY_MODULE in _MODULES or FALLBACKS_MODULE in _MODULES):
                patch_imported_wrappers()
            name = name or (serialized.get("name") if serialized else None) or "chain"
            run_key = run_id.int if run_id.__class__ is UUID else key_of(run_id)
            parent_key = parent_run_id.int if parent_run_id.__class__ is UUID else parent_key_of(parent_run_id)
            if metadata and metadata.get("langgraph_node") == name:
                # A LangGraph node's run (a ``graph:step:<n>`` tag), as opposed to a runnable inside it of the same
                # name: told here, not by a helper of its own (a frame fewer for every node, ~0.45k instructions)
                for tag in tags or ():
                    if tag.startswith("graph:step:"):
                        self._start_node(client, name, inputs, run_key, parent_key, metadata, "node", tags)
                        return
                if _is_task(metadata, RUNS.get(parent_key) if parent_key is not None else None, name):
                    self._start_node(client, name, inputs, run_key, parent_key, metadata, "task", tags)
                    return
            if name == "LangGraph":
                kind = "graph"
            elif parent_key is None or parent_key not in RUNS:
                kind = "graph" if not (metadata and "langgraph_step" in metadata) and _looks_like_graph(serialized) \
                    else "chain"
            else:
                kind = "chain"
            run = self._open(client, run_key, parent_key, name, kind, metadata)
            if run is not None:
                if kind == "graph":
                    run.in_graph = True
                    if "node" in UNPATCHED_RUN_CONTEXTS:  # before its first node: a timed one is run from the graph
                        install_run_contexts()  # (_timeouts)
                    if metadata:
                        _copy_node_metadata(run.span, metadata)
                if tags or metadata:
                    add_labels(run.span.attributes, tags, metadata, client.config.zero_data_retention)
                if client.config.capture_text:
                    run.span.input = _jsonable(inputs)
        except Exception:
            swallow_internal_error("AgentWatchHandler.on_chain_start")

    def _start_node(self, client: agentwatch.Client, name: str, inputs: Any, run_key: int, parent_key: int | None,
                    metadata: Mapping[str, Any], kind: str = "node", tags: list[str] | None = None) -> None:
        """A graph node's run, or (``kind="task"``) a Functional API task's: an agent scope of its name, limits checked
        before its code runs, and that code run with both current (``_node_context``)."""
        # _node_scope called only for a node with an agent of its own: the usual node has none, told without its frame
        # (~0.45k machine instructions a node, callgrind micro loop)
        scope = self._node_scope(client, name) if name in self._node_agents or name in client.config.agents else ()
        run = self._open(client, run_key, parent_key, name, kind, metadata, scope)
        if run is None:
            return
        run.in_graph = True
        if self._thread_budget is not None:  # the node's code spends from it, LangChain's calls or not
            run.budgets = self._thread_budgets(metadata)
        if kind in UNPATCHED_RUN_CONTEXTS:  # the node's code runs with it current (_node_context)
            install_run_contexts()
        _copy_node_metadata(run.span, metadata)
        add_labels(run.span.attributes, tags, metadata, client.config.zero_data_retention)
        if client.config.capture_text:
            run.span.input = _jsonable(inputs)
        if self._on_budget == "interrupt":
            # interrupt() needs the node's runnable context, which LangGraph sets only after this
            # callback: the node's first model call asks the human instead.
            return
        # The breaker transition or alert the check records goes under the node, in the run's trace.
        token = attach(run.span)
        try:
            # A limit exhausted during the previous node stops this one before it runs; the checkpoint
            # then holds every finished node and `graph.invoke(None, config)` resumes here.
            agentwatch.check_limits(scopes=run.scopes, trace_id=run.span.trace_id, budgets=run.budgets)
        except CircuitBreakerException as error:
            self._close(run_key, error)
            raise graph_block(error) from None
        finally:
            detach(token)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     tags: list[str] | None = None, **kwargs: Any) -> None:
        try:
            run = RUNS.pop(run_id.int if run_id.__class__ is UUID else key_of(run_id), None)
            if run is not None:
                if capturing():
                    run.span.output = _jsonable(outputs)
                end_span(run.span)
        except Exception:
            swallow_internal_error("AgentWatchHandler.on_chain_end")

    @stop_on_exception
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(key_of(run_id), error)

    # ---- model calls --------------------------------------------------------------------------

    def _start_model(self, client: agentwatch.Client, run_key: int, parent_key: int | None, name: str,
                     metadata: Mapping[str, Any], invocation: Mapping[str, Any], prompt: Any, request: Any,
                     tags: list[str] | None = None) -> None:
        """Open the model call of ``run_key`` under the run of ``parent_key`` (their run ids' ``int``)."""
        parent = RUNS.get(parent_key) if parent_key is not None else None
        if parent is not None:
            scopes, parent_span, parent_in_graph = parent.scopes, parent.span, parent.in_graph
        else:
            scopes, parent_span, parent_in_graph = (self._own_scopes() if self._agent else ()), None, False
        model = metadata.get("ls_model_name") or invocation.get("model") or invocation.get("model_name")
        attributes: dict[str, Any] = {}
        in_graph = parent_in_graph
        if "langgraph_step" in metadata:
            in_graph = True
            attributes["langgraph_step"] = metadata["langgraph_step"]
        if "langgraph_node" in metadata:
            attributes["langgraph_node"] = metadata["langgraph_node"]
        if invocation.get("stream") or invocation.get("streaming"):
            attributes["streaming"] = True
        # add_labels only with labels it may keep: a model call's metadata is usually only LangChain's own keys, told
        # apart here by the set comparison add_labels would make first, without its frame (~0.9k machine instructions
        # fewer a chat call, callgrind micro loop)
        if tags or (metadata and not SEEN_OWN_KEYS.issuperset(metadata)):
            add_labels(attributes, tags, metadata, client.config.zero_data_retention)
        budgets = self._thread_budgets(metadata) if self._thread_budget is not None else ()
        pausable = in_graph and self._on_budget == "interrupt"
        if pausable:
            # Resuming after our pause: the human's answer applies before the check, so the one pause
            # records one blocked span, in whichever process resumes.
            take_answer(enclosing_monitors(scopes=scopes), lambda: agentwatch.check_limits(scopes=scopes))
        try:
            # parent None: the context's current span. By position, as start_llm_call's own comment asks (every chat
            # call): name, model, provider, parent, scopes, kind, input, attributes, check, reserve, budgets.
            call = start_llm_call(name, model, metadata.get("ls_provider"), parent_span, scopes, "llm", prompt,
                                  attributes, True, None, budgets)
        except CircuitBreakerException as error:
            if pausable:
                interrupt_for_budget(error)  # raises GraphInterrupt; returns only with an answer applied
                self._start_model(client, run_key, parent_key, name, metadata, invocation, prompt, request, tags)
                return
            raise (graph_block(error) if in_graph else error) from None
        # The model's HTTP request runs in this same context: a lower layer (the HTTP plugin) finds this call there
        # and adds to it instead of counting the request a second time. The model's entry point restores the
        # caller's context when it returns (_patches), so the activation never outlives the model's own code.
        call.activate()
        # new_run, as in _open (not a pausing run: pauses is False)
        RUNS[run_key] = new_run(call.span, scopes, call, parent_in_graph, request, False, budgets, parent_span)

    def _adopt(self, run_key: int) -> None:
        """A model's own handler with an agent (``ChatOpenAI(callbacks=[AgentWatchHandler(agent=...)])``) hears its
        start after the handler its chain passed on (LangChain puts a run's inherited handlers before its own), which
        opened the call without this agent: the call is opened again, not yet sent, with the agent's limits checked and
        its spend charged to it."""
        run = RUNS.get(run_key)
        own = self._own_scopes()
        if run is None or run.call is None or run.call.ended or not own:
            return
        if any(scope.monitor is own[0].monitor for scope in run.scopes):
            return
        first = run.call
        span = first.span
        first.deactivate()
        first.discard()
        scopes = run.scopes + own
        attributes = {key: value for key, value in span.attributes.items() if key in _CALL_KEYS}
        try:
            call = agentwatch.start_llm_call(span.name, model=span.model, provider=span.provider, parent=run.parent,
                                             scopes=scopes, input=span.input, attributes=attributes,
                                             budgets=run.budgets)
        except CircuitBreakerException as error:
            RUNS.pop(run_key, None)
            raise (graph_block(error) if run.in_graph else error) from None
        call.activate()
        RUNS[run_key] = new_run(call.span, scopes, call, run.in_graph, run.request, run.pauses, run.budgets, run.parent)

    # The keywords LangChain passes are parameters here, not left to ``**kwargs``: CPython matches a keyword that
    # lands in ``**kwargs`` by comparing it with every parameter name, and builds the dict, on every model call.
    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: list[list[Any]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, invocation_params: dict[str, Any] | None = None,
                            options: Any = None, name: str | None = None, batch_size: Any = None,
                            **kwargs: Any) -> None:
        try:
            client = agentwatch.get_client()
            run_key = run_id.int if run_id.__class__ is UUID else key_of(run_id)
            if client is None or run_key in RUNS:
                if client is not None and self._agent:
                    self._adopt(run_key)
                return  # not initialised, or another handler instance already records this run
            name = name or (serialized.get("name") if serialized else None) or "chat_model"
            prompt = message_dicts(messages) if client.config.capture_text else None
            parent_key = parent_run_id.int if parent_run_id.__class__ is UUID else parent_key_of(parent_run_id)
            self._start_model(client, run_key, parent_key, name,
                              metadata or _EMPTY, invocation_params or _EMPTY,
                              prompt, messages, tags)
        except Exception:
            swallow_internal_error("AgentWatchHandler.on_chat_model_start")

    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, invocation_params: dict[str, Any] | None = None,
                     options: Any = None, name: str | None = None, batch_size: Any = None, **kwargs: Any) -> None:
        try:
            client = agentwatch.get_client()
            run_key = run_id.int if run_id.__class__ is UUID else key_of(run_id)
            if client is None or run_key in RUNS:
                if client is not None and self._agent:
                    self._adopt(run_key)
                return
            name = name or (serialized.get("name") if serialized else None) or "llm"
            prompt = list(prompts) if client.config.capture_text else None
            parent_key = parent_run_id.int if parent_run_id.__class__ is UUID else parent_key_of(parent_run_id)
            self._start_model(client, run_key, parent_key, name,
                              metadata or _EMPTY, invocation_params or _EMPTY,
                              prompt, prompts, tags)
        except Exception:
            swallow_internal_error("AgentWatchHandler.on_llm_start")

    def on_llm_new_token(self, token: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                         tags: list[str] | None = None, chunk: Any = None, **kwargs: Any) -> None:
        try:
            run = RUNS.get(run_id.int if run_id.__class__ is UUID else key_of(run_id))
            if run is not None and run.call is not None:
                run.call.mark_first_token()
        except Exception:
            swallow_internal_error("AgentWatchHandler.on_llm_new_token")

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   tags: list[str] | None = None, **kwargs: Any) -> None:
        try:
            run = RUNS.pop(run_id.int if run_id.__class__ is UUID else key_of(run_id), None)
            if run is None or run.call is None:
                return
            call = run.call
            call.deactivate()
            finish_reason = record_result(call, response, capturing())
            call.end(finish_reason=finish_reason)
        except Exception:
            swallow_internal_error("AgentWatchHandler.on_llm_end")

    @stop_on_exception
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        end_model_run(key_of(run_id), error, kwargs.get("response"))

    # ---- tools and retrievers -----------------------------------------------------------------

    @stop_on_exception
    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        client = agentwatch.get_client()
        if client is None:
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        run = self._open(client, key_of(run_id), parent_key_of(parent_run_id), name, "tool",
                         metadata)
        if run is not None:
            if "tool" in UNPATCHED_RUN_CONTEXTS:  # the tool's body runs with it current (_node_context)
                install_run_contexts()
            run.span.attributes["tool.name"] = name
            if tags or metadata:
                add_labels(run.span.attributes, tags, metadata, client.config.zero_data_retention)
            if capturing():
                run.span.input = inputs if inputs is not None else input_str

    @stop_on_exception
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run_key = key_of(run_id)
        run = RUNS.get(run_key)
        if run is not None and capturing():
            run.span.output = _jsonable(getattr(output, "content", output))
        self._close(run_key)

    @stop_on_exception
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(key_of(run_id), error)

    @stop_on_exception
    def on_retriever_start(self, serialized: dict[str, Any] | None, query: str, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        client = agentwatch.get_client()
        if client is None:
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "retriever"
        run = self._open(client, key_of(run_id), parent_key_of(parent_run_id), name,
                         "retriever", metadata)
        if run is not None and (tags or metadata):
            add_labels(run.span.attributes, tags, metadata, client.config.zero_data_retention)
        if run is not None and capturing():
            run.span.input = query

    @stop_on_exception
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        run_key = key_of(run_id)
        run = RUNS.get(run_key)
        if run is not None:
            run.span.attributes["retriever.documents"] = len(documents)
            if capturing():
                run.span.output = [getattr(doc, "page_content", str(doc)) for doc in documents]
        self._close(run_key)

    @stop_on_exception
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(key_of(run_id), error)


def _copy_node_metadata(span: Span, metadata: Mapping[str, Any]) -> None:
    attributes = span.attributes
    for key, attribute in _NODE_ATTRIBUTES:
        value = metadata.get(key)
        if value is not None:
            kind = value.__class__
            if kind in _SCALARS:
                attributes[attribute] = value
            elif kind is tuple:
                # LangGraph's path and triggers, tuples of strings: what _jsonable makes of them, without its frame
                # and its comprehension's (~0.9k machine instructions each, twice a node). A loop and [*value], not
                # _SCALARS.issuperset(map(type, value)) and list(value): ~1k fewer a tuple.
                for item in value:
                    if item.__class__ not in _SCALARS:
                        attributes[attribute] = _jsonable(value)
                        break
                else:
                    attributes[attribute] = [*value]
            else:
                attributes[attribute] = _jsonable(value)
    # Last, read once for its attribute and the session (not a turn of the loop and a second read: ~0.4k machine
    # instructions a graph or node start). What _jsonable makes of a tuple is what the loop does with it.
    thread_id = metadata.get("thread_id")
    if thread_id is not None:
        attributes["thread_id"] = thread_id if thread_id.__class__ in _SCALARS else _jsonable(thread_id)
        # A LangGraph thread is a session: every invocation and resume of it (in any process) is one more trace of
        # it. An enclosing agentwatch.session() keeps its own id; the spans below inherit this one.
        if thread_id != "":
            attributes.setdefault(SESSION_KEY, str(thread_id))


def _looks_like_graph(serialized: Mapping[str, Any] | None) -> bool:
    identifier = (serialized or {}).get("id") or ()
    return any("pregel" in str(part).lower() or "graph" in str(part).lower() for part in identifier)


def _jsonable(value: Any) -> Any:
    kind = value.__class__
    if kind in _SCALARS:  # exact types first: the usual values, without isinstance against ABCs
        return value
    if kind is list or kind is tuple:
        return [item if item.__class__ in _SCALARS else _jsonable(item) for item in value]
    if kind is dict:
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    content = getattr(value, "content", None)
    if content is not None:
        return {"type": getattr(value, "type", type(value).__name__), "content": _jsonable(content)}
    return clip(repr(value))


# Last: a zero-config install that ran while this module was being imported (it imports langchain_core) needs the class.
install_deferred()
