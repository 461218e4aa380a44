"""Instrumentation span handler: LlamaIndex components → AgentWatch spans, nested as LlamaIndex nests them.

Every ``@dispatcher.span`` method of LlamaIndex passes through here. Only the public entry points of
the components people reason about become spans (query and chat engines, retrievers, synthesizers,
rerankers, tools, workflows and agents with their steps); their internals (``_query``, splitters,
prompt programs) are skipped and what they call hangs under the nearest recorded component. The
recorded span is made the current span while its method runs, so LLM calls, embeddings and spans of
other plugins or of ``agentwatch.span()`` inside it nest under it.

LLM and embedding methods are registered as *frames* for the legacy callback that records the call
(see ``_calls``), and get the zero-config callback handler if their callback manager lacks one.
"""

from __future__ import annotations

import inspect
import sys
from asyncio import CancelledError
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.chat_engine.types import BaseChatEngine
from llama_index.core.instrumentation.span.base import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.response_synthesizers.base import BaseSynthesizer
from llama_index.core.tools.types import BaseTool

from agentwatch import Span
from agentwatch.instrumentation import (
    attach,
    capturing,
    clip,
    detach,
    end_span,
    get_client,
    get_current_agent_scopes,
    get_current_span,
    stop_on_exception,
    swallow_internal_error,
)

from ._agents import patch_if_loaded
from ._attach import attach_to
from ._calls import FRAMES

__all__ = ["AgentWatchSpanHandler", "OPEN", "Opened"]

_LLM_METHODS = frozenset({"chat", "achat", "stream_chat", "astream_chat", "complete", "acomplete",
                          "stream_complete", "astream_complete"})
_EMBEDDING_METHODS = frozenset({"get_query_embedding", "aget_query_embedding", "get_text_embedding",
                                "aget_text_embedding", "get_text_embedding_batch",
                                "aget_text_embedding_batch"})
_UUID_SUFFIX = 37  # "-" + str(uuid4())


# Plain classes, not dataclasses: making those at import compiles their methods from generated source (~1.5 ms of
# ``init()`` for these two).
class _Rule:
    __slots__ = ("role", "kind", "name")

    def __init__(self, role: str, kind: str = "", name: Callable[[Any, str], str] | None = None) -> None:
        self.role = role  # "frame" (LLM/embedding method), "component", "workflow", "step"
        self.kind = kind
        self.name = name

    def __repr__(self) -> str:
        return f"_Rule({self.role!r}, {self.kind!r}, {self.name!r})"


class Opened:
    __slots__ = ("span", "component", "role", "context", "agent_name", "cancelled")

    def __init__(self, span: Span, component: Any, role: str) -> None:
        self.span = span
        self.component = component
        self.role = role
        self.context: tuple[Any, ...] = ()  # attach()'s token
        #: For a workflow run: the agent whose turn it is (``AgentWorkflow`` hands off between its agents).
        self.agent_name: str | None = None
        #: Why LlamaIndex cut a run or step off (its ``SpanCancelledEvent``), which it then ends as if it returned.
        self.cancelled: str | None = None

    def __repr__(self) -> str:
        return f"Opened(span={self.span!r}, role={self.role!r})"


#: Instrumentation span id → the AgentWatch span recorded for it (read by the event handler).
OPEN: dict[str, Opened] = {}

_FRAME = _Rule("frame")
_STEP = _Rule("step", "node")
#: (class, operation) → the rule for that method of that class, and the method's name.
_rules: dict[tuple[type, str], tuple[_Rule | None, str]] = {}


def _qualified(component: Any, method: str) -> str:
    return f"{type(component).__name__}.{method}"


def _tool_name(component: Any, method: str) -> str:
    metadata = getattr(component, "metadata", None)
    name = getattr(metadata, "name", None)
    return name if isinstance(name, str) and name else type(component).__name__


def _workflow_name(component: Any, method: str) -> str:
    name = getattr(component, "name", None)
    return name if isinstance(name, str) and name and _is_agent(component) else type(component).__name__


_COMPONENTS: tuple[tuple[type, frozenset[str], _Rule], ...] = (
    (BaseQueryEngine, frozenset({"query", "aquery"}), _Rule("component", "chain", _qualified)),
    (BaseRetriever, frozenset({"retrieve", "aretrieve"}), _Rule("component", "retriever", _qualified)),
    (BaseSynthesizer, frozenset({"synthesize", "asynthesize"}), _Rule("component", "chain", _qualified)),
    (BaseChatEngine, frozenset({"chat", "achat", "stream_chat", "astream_chat"}),
     _Rule("component", "chain", _qualified)),
    (BaseNodePostprocessor, frozenset({"_postprocess_nodes", "_apostprocess_nodes"}),
     _Rule("component", "chain", lambda component, method: f"{type(component).__name__}.postprocess_nodes")),
    (BaseTool, frozenset({"__call__", "call", "acall"}), _Rule("component", "tool", _tool_name)),
)


def _agent_class() -> type | None:
    """``FunctionAgent``, ``ReActAgent``, ``CodeActAgent`` share this base (an ``AgentWorkflow`` of several
    agents is a workflow: its agents run as its steps)."""
    module = sys.modules.get("llama_index.core.agent.workflow.base_agent")
    found = getattr(module, "BaseWorkflowAgent", None) if module is not None else None
    return found if isinstance(found, type) else None


def _is_agent(component: Any) -> bool:
    agent_class = _agent_class()
    return agent_class is not None and isinstance(component, agent_class)


def _classify(component_type: type, method: str) -> _Rule | None:
    if method in _LLM_METHODS and issubclass(component_type, BaseLLM):
        return _FRAME
    if method in _EMBEDDING_METHODS and issubclass(component_type, BaseEmbedding):
        return _FRAME
    for base, methods, rule in _COMPONENTS:
        if method in methods and issubclass(component_type, base):
            return rule
    if method == "run":
        workflows = sys.modules.get("workflows.workflow")
        workflow_type = getattr(workflows, "Workflow", None) if workflows is not None else None
        if isinstance(workflow_type, type) and issubclass(component_type, workflow_type):
            agent_class = _agent_class()
            kind = "agent" if agent_class is not None and issubclass(component_type, agent_class) else "graph"
            return _Rule("workflow", kind, _workflow_name)
    return None


def _learn_rule(component_type: type, operation: str) -> tuple[_Rule | None, str]:
    """The rule for ``operation`` (``"RetrieverQueryEngine.query"``) of ``component_type``, and the method's name:
    worked out once per class and operation and kept in ``_rules``, which ``span_enter`` reads for every LlamaIndex
    span of an object (twice per chat())."""
    method = _method_of(operation)
    found = _rules[(component_type, operation)] = (_classify(component_type, method), method)
    return found


def _operation_of(span_id: str) -> str:
    """``"RetrieverQueryEngine.query-<uuid4>"`` → ``"RetrieverQueryEngine.query"``."""
    if len(span_id) > _UUID_SUFFIX and span_id[-_UUID_SUFFIX] == "-":
        return span_id[:-_UUID_SUFFIX]
    return span_id


def _method_of(operation: str) -> str:
    """``"RetrieverQueryEngine.query"`` → ``"query"``."""
    return operation[operation.rfind(".") + 1:]


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    query = getattr(value, "query_str", None)  # QueryBundle
    return query if isinstance(query, str) else clip(repr(value))


class AgentWatchSpanHandler(BaseSpanHandler[BaseSpan]):
    """Records LlamaIndex component spans; added to the root dispatcher by ``agentwatch.init()``."""

    @classmethod
    def class_name(cls) -> str:
        return "AgentWatchSpanHandler"

    # Called for every LlamaIndex span (twice per chat()): guarded inline, see ``AgentWatchCallbackHandler``.
    def span_enter(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None,
                   parent_id: str | None = None, tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
        try:
            client = get_client()
            if client is None:
                return
            if instance is None:
                # Workflow steps are plain functions; they are the spans directly under a workflow run.
                run = OPEN.get(parent_id) if parent_id is not None else None
                if run is not None and run.role == "workflow":
                    operation = _operation_of(id_)
                    self._open(client, id_, operation, _method_of(operation), _STEP, None, bound_args, tags,
                               _step_agent(bound_args, run))
                return
            operation = _operation_of(id_)
            # The cached rule read here, not in a helper: a frame less a span (~1k instructions, two per chat()).
            try:
                rule, method = _rules[type(instance), operation]
            except KeyError:
                rule, method = _learn_rule(type(instance), operation)
            if rule is None:
                return
            if rule is _FRAME:
                FRAMES[id_] = (parent_id, method, instance)  # a Frame
                attach_to(instance)
                return
            parent = OPEN.get(parent_id) if parent_id is not None else None
            if parent is None or parent.component is not instance:  # else the component's own inner method
                self._open(client, id_, operation, method, rule, instance, bound_args, tags)
        except Exception:
            swallow_internal_error("AgentWatchSpanHandler.span_enter")

    def _open(self, client: Any, id_: str, operation: str, method: str, rule: _Rule, component: Any,
              bound_args: inspect.BoundArguments, tags: dict[str, Any] | None, step_agent: str | None = None) -> None:
        attributes: dict[str, Any] = {"llamaindex.operation": operation}
        agent = None
        if rule.role == "step":
            name = method
            attributes["workflow.step"] = method
            if tags and "llamaindex.step.input_event" in tags:
                attributes["workflow.input_event"] = tags["llamaindex.step.input_event"]
            scopes = get_current_agent_scopes()
            if step_agent is not None and not (scopes and scopes[-1].name == step_agent):
                # A step of an AgentWorkflow runs for one of its agents: its calls are checked against
                # that agent's limits (init(agents=...)), as the calls of a FunctionAgent's own run are.
                agent = client.agent_scope(step_agent)
        else:
            assert rule.name is not None
            name = rule.name(component, method)
            if rule.kind == "tool":
                attributes["tool.name"] = name
            elif rule.kind == "agent":
                agent = client.agent_scope(name)
            if rule.role == "workflow":
                patch_if_loaded()  # before its steps run: an agent's ways out for a block (``_agents``)
        span = client.start_span(name, rule.kind, parent=get_current_span(), attributes=attributes,
                                 agent=agent)
        opened = Opened(span, component, rule.role)
        if capturing():
            span.input = _input_of(rule, bound_args)
        # Calls made by an agent's steps are checked against its own limits (init(agents=...)) too.
        opened.context = attach(span, agent=agent)
        OPEN[id_] = opened

    # Most spans LlamaIndex ends are none of ours: two dict pops (which cannot fail), no guarded call, for them.
    def span_exit(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None,
                  result: Any | None = None, **kwargs: Any) -> None:
        if FRAMES.pop(id_, None) is not None:
            return
        opened = OPEN.pop(id_, None)
        if opened is not None:
            _exit(opened, result)

    def span_drop(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None,
                  err: BaseException | None = None, **kwargs: Any) -> None:
        if FRAMES.pop(id_, None) is not None:
            return
        opened = OPEN.pop(id_, None)
        if opened is not None:
            _drop(opened, err)

    # The base class's bookkeeping (open_spans, a lock per span) is replaced by the methods above.
    def new_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None,
                 parent_span_id: str | None = None, tags: dict[str, Any] | None = None,
                 **kwargs: Any) -> BaseSpan | None:
        return None

    def prepare_to_exit_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None,
                             result: Any | None = None, **kwargs: Any) -> BaseSpan | None:
        return None

    def prepare_to_drop_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None,
                             err: BaseException | None = None, **kwargs: Any) -> BaseSpan | None:
        return None


@stop_on_exception
def _exit(opened: Opened, result: Any) -> None:
    if result is not None:
        if capturing():
            opened.span.output = _output_of(result)
        if isinstance(result, StreamingResponse | AsyncStreamingResponse):
            _parent_stream(result, opened.span)
    # A run cancelled (``cancel_run()``: the caller gets ``WorkflowCancelledByUser``) and a step whose task was
    # cancelled (that, or the run's timeout) end as other plugins' cancelled spans do: an error, CancelledError.
    _close(opened, None if opened.cancelled is None else CancelledError(opened.cancelled))


@stop_on_exception
def _drop(opened: Opened, error: BaseException | None) -> None:
    waited_for = _awaited_event(error)
    if waited_for is not None:  # paused, not failed: LlamaIndex runs it again once the event has come
        opened.span.attributes["llamaindex.waiting_for"] = waited_for
        error = None
    _close(opened, error)


def _awaited_event(error: BaseException | None) -> str | None:
    """The event a tool waits for when it left by ``ctx.wait_for_event`` (a human's answer): LlamaIndex pauses it
    by raising ``WaitingForEvent`` through it, and keeps that out of its own step spans; a tool is a span of ours."""
    if error is None or type(error).__name__ != "WaitingForEvent" or \
            not type(error).__module__.startswith("workflows."):
        return None
    event_type = getattr(getattr(error, "add", None), "event_type", None)
    return event_type.__name__ if isinstance(event_type, type) else "event"


def _close(opened: Opened, error: BaseException | None) -> None:
    # Restore what the component's caller had as current span even if a call started inside it is still
    # streaming (its own end then leaves this value alone).
    detach(opened.context)  # nothing to undo if ended in another context (a future's callback)
    opened.context = ()
    end_span(opened.span, error)


def _step_agent(bound_args: inspect.BoundArguments, run: Opened) -> str | None:
    """The agent a workflow step runs for: named by its input event (``AgentInput``, ``AgentSetup``,
    ``AgentOutput`` carry ``current_agent_name``), else the agent whose turn it is in this run (a tool
    call, or aggregating its results, is the current agent's work, as ``AgentWorkflow`` itself reads it
    from its context store)."""
    for value in bound_args.arguments.values():
        name = getattr(value, "current_agent_name", None)
        if isinstance(name, str) and name:
            run.agent_name = name
            return name
    return run.agent_name


def _parent_stream(result: StreamingResponse | AsyncStreamingResponse, span: Span) -> None:
    """A streaming query calls its LLM only when the caller reads the stream, after the query returned:
    make the query's span current while the stream runs, so that call still hangs under it."""
    span.attributes["streaming"] = True
    stream = result.response_gen
    if inspect.isgenerator(stream):
        result.response_gen = _parented(stream, span)
    elif inspect.isasyncgen(stream):
        result.response_gen = _aparented(stream, span)


def _parented(stream: Generator[Any, Any, Any], span: Span) -> Generator[Any, None, None]:
    try:
        while True:
            token = attach(span)
            try:
                item = next(stream)
            except StopIteration:
                return
            finally:
                detach(token)
            yield item
    finally:
        stream.close()


async def _aparented(stream: AsyncGenerator[Any, Any], span: Span) -> AsyncGenerator[Any, None]:
    try:
        while True:
            token = attach(span)
            try:
                item = await stream.__anext__()
            except StopAsyncIteration:
                return
            finally:
                detach(token)
            yield item
    finally:
        await stream.aclose()


def _input_of(rule: _Rule, bound_args: inspect.BoundArguments) -> Any:
    arguments = bound_args.arguments
    for key in ("str_or_query_bundle", "message", "query", "query_bundle", "input"):
        if key in arguments:
            return _text(arguments[key])
    if rule.kind == "tool":
        return {key: _text(value) for key, value in arguments.items() if key != "self"}
    return None


def _output_of(result: Any) -> Any:
    # Only text that is already there: str() of a streaming response would consume the stream.
    for attribute in ("response", "content"):
        value = getattr(result, attribute, None)
        if isinstance(value, str) and value:
            return value
    return result if isinstance(result, str) else None


def forget_rules() -> None:
    _rules.clear()
