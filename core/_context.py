"""Trace context carried in contextvars, so it follows asyncio tasks and copied contexts of threads."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Context, ContextVar, Token, copy_context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._span import Span

if TYPE_CHECKING:
    from ._breaker import Monitor
    from ._llm import LLMCall

__all__ = ["AgentScope", "current_span", "current_trace_id", "current_agent_scopes", "current_metadata",
           "current_session_id", "SESSION_KEY", "attach", "detach", "KEEP", "save_current", "restore_current",
           "carry", "Carried", "CARRIED", "attach_call_attributes", "SCOPED", "note_scoped"]


@dataclass(frozen=True, slots=True)
class AgentScope:
    """An agent's identity and its monitor; one per agent name, shared by every ``with agent(...)``."""

    name: str
    agent_id: str
    role: str
    monitor: Monitor


CURRENT_SPAN: ContextVar[Span | None] = ContextVar("agentwatch_span", default=None)
AGENT_SCOPES: ContextVar[tuple[AgentScope, ...]] = ContextVar("agentwatch_agent_scopes", default=())
METADATA: ContextVar[dict[str, Any] | None] = ContextVar("agentwatch_metadata", default=None)
#: The LLM call in flight (read through ``_llm.current_llm_call``, which hides an ended one).
CURRENT_LLM_CALL: ContextVar[LLMCall | None] = ContextVar("agentwatch_llm_call", default=None)
#: The session (``agentwatch.session()``) that spans started in this context belong to. Spans also inherit it from
#: their parent, so a framework that names the session on a root span (LangGraph's ``thread_id``) needs no context.
SESSION_ID: ContextVar[str | None] = ContextVar("agentwatch_session_id", default=None)
#: The span attribute holding the session id (OpenInference's name; exported to OTLP as it is).
SESSION_KEY = "session.id"
#: Attributes every LLM call started in this context carries (``attach_call_attributes``): the framework step it is
#: made in, for a call a lower layer records (a LangGraph node's name and step on the openai SDK's own calls).
CALL_ATTRIBUTES: ContextVar[dict[str, Any] | None] = ContextVar("agentwatch_call_attributes", default=None)
#: Non-empty once any context had call attributes: until then an LLM call does not read the variable.
call_attributes_used: list[bool] = []
#: What ``carry`` carries: where work of this context is recorded and what limits it (not the LLM call in
#: flight: code run elsewhere is not part of it). ``_run_budget`` adds its per-run monitors.
CARRIED: list[ContextVar[Any]] = [CURRENT_SPAN, AGENT_SCOPES, METADATA, SESSION_ID, CALL_ATTRIBUTES]

#: Holds True once any context of this process was given agent scopes, metadata, a session or a per-run budget
#: (``note_scoped``, before it is set). Until then every context holds the defaults, and the span and LLM-call paths
#: read none of those variables: a plain ``init()`` sets none, and each read is a C call (~300 machine instructions).
SCOPED: list[bool] = []


def note_scoped() -> None:
    """Called before setting an agent scope, metadata, a session or a per-run budget in a context (see ``SCOPED``)."""
    if not SCOPED:
        SCOPED.append(True)


# The bound methods of the variables every LLM call reads or sets (~10 times a call): CPython 3.11 does not specialise
# ``var.get()`` for a ContextVar, and a call through the attribute costs ~800 machine instructions against ~180 for
# the bound method (callgrind), ~10 % of what AgentWatch adds to a LangChain chat call.
get_current_span: Final = CURRENT_SPAN.get
get_current_llm_call_var: Final = CURRENT_LLM_CALL.get
get_agent_scopes: Final = AGENT_SCOPES.get
get_metadata: Final = METADATA.get
get_session_id: Final = SESSION_ID.get
get_call_attributes: Final = CALL_ATTRIBUTES.get
set_current_span: Final = CURRENT_SPAN.set
set_current_llm_call: Final = CURRENT_LLM_CALL.set
reset_current_span: Final = CURRENT_SPAN.reset
reset_current_llm_call: Final = CURRENT_LLM_CALL.reset


class _Keep:
    """The default of ``attach``'s ``span`` and ``llm_call``: leave that value as it is."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


def current_span() -> Span | None:
    """The innermost open span of this context, or None."""
    return get_current_span()


def current_trace_id() -> str | None:
    span = get_current_span()
    return span.trace_id if span is not None else None


def current_agent_scopes() -> tuple[AgentScope, ...]:
    """Enclosing agent scopes, outermost first."""
    return get_agent_scopes()


def current_metadata() -> dict[str, Any]:
    return dict(METADATA.get() or {})


def attach(span: Span | None | _Keep = KEEP, *, llm_call: LLMCall | None | _Keep = KEEP,
           agent: AgentScope | None = None) -> tuple[Token[Any], ...]:
    """Make ``span`` the current span, ``llm_call`` the current LLM call and push ``agent`` onto the agent
    scopes of this context, until ``detach`` of the returned token.

    What is not passed is left alone (and not restored by ``detach``). Passing the current values makes a
    restore point: ``detach`` then undoes whatever the code in between made current.
    """
    tokens: list[Token[Any]] = []
    if span is not KEEP:
        tokens.append(CURRENT_SPAN.set(span))  # type: ignore[arg-type]  # KEEP excluded above
    if llm_call is not KEEP:
        tokens.append(CURRENT_LLM_CALL.set(llm_call))  # type: ignore[arg-type]
    if agent is not None:
        note_scoped()
        tokens.append(AGENT_SCOPES.set((*AGENT_SCOPES.get(), agent)))
    return tuple(tokens)


def attach_call_attributes(attributes: dict[str, Any]) -> tuple[Token[Any], ...]:
    """Give every LLM call started in this context ``attributes`` (beside those of the enclosing contexts; a key the
    call's own layer sets wins) until ``detach`` of the returned token."""
    if not call_attributes_used:
        call_attributes_used.append(True)
    enclosing = get_call_attributes()
    return (CALL_ATTRIBUTES.set({**enclosing, **attributes} if enclosing else dict(attributes)),)


def detach(token: tuple[Token[Any], ...]) -> None:
    """Undo one ``attach``. From another context than ``attach``'s (a framework ending work in a callback
    of another task) there is nothing of ours to undo there, and nothing is changed."""
    for item in reversed(token):
        try:
            item.var.reset(item)
        except ValueError:
            pass


def save_current() -> tuple[Span | None, LLMCall | None]:
    """The current span and LLM call as they are: a restore point for ``restore_current``.

    The cheap spelling of ``detach(attach(current span, llm_call=current call))`` around a framework's entry point
    (it runs on every model call): nothing is set unless the code in between left something changed.
    """
    return get_current_span(), get_current_llm_call_var()


def restore_current(saved: tuple[Span | None, LLMCall | None]) -> None:
    """Make the span and LLM call of ``save_current`` current again, if the code since changed them."""
    span, call = saved
    if get_current_span() is not span:
        set_current_span(span)
    if get_current_llm_call_var() is not call:
        set_current_llm_call(call)


def current_session_id() -> str | None:
    """The id of the enclosing ``agentwatch.session()``, or None."""
    return get_session_id()


class Carried:
    """AgentWatch's values of the context that made it (``carry``), to run code elsewhere with them: on another
    thread, which would start without them (an executor's worker, a framework's thread of its own)."""

    __slots__ = ("_values",)

    def __init__(self, values: list[tuple[ContextVar[Any], Any]]) -> None:
        self._values = values

    def context(self) -> Context:
        """A copy of the running context with these values set."""
        context = copy_context()
        context.run(self._set)
        return context

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function`` with these values set in the running context, put back as they were after it: whatever else
        it sets stays, as it would without them (a pool worker's own cache in a context variable)."""
        tokens = self._set()
        try:
            return function(*args, **kwargs)
        finally:
            for token in reversed(tokens):
                token.var.reset(token)

    def _set(self) -> list[Token[Any]]:
        note_scoped()  # values of a context that had them (else it carries nothing: ``carry``)
        return [var.set(value) for var, value in self._values]


def carry(*also: ContextVar[Any]) -> Carried | None:
    """This context's AgentWatch values (the current span, agent scopes, metadata, session, per-run budgets) and a
    plugin's own variables ``also``, to run code on another thread as this context's work: its LLM calls are
    recorded under the current span and limited by the current agents. Only these values go: the code sees nothing
    else of this context. None when none of them is set (nothing to carry)."""
    # Asked first, stopping at the first value set: the usual submission carries nothing (a framework's own pool work,
    # CrewAI's event bus ~20 times an LLM call), and a list of every value with all() over a generator cost ~11.6k
    # machine instructions a call against ~2.8k (callgrind).
    carried = (*CARRIED, *also) if also else CARRIED  # no copy of the list for the usual call (no ``also``)
    for var in carried:
        value = var.get()
        if not (value is None or value == ()):
            return Carried([(var, var.get()) for var in carried])
    return None
