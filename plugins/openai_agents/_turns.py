"""One model call of an Agents SDK turn: limits checked before it, its usage read after it.

The run loop resolves a turn's agent, model and input just before it calls the model (``_patch``); they are
kept on a ``_Turn`` for the length of that turn, so the call is checked against the agent's scope (its
``name``, as in ``init(agents={"Triage": {...}})``) whether or not the SDK's tracing is on.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agentwatch.instrumentation import (
    KEEP,
    AgentScope,
    CircuitBreakerException,
    LLMCall,
    Span,
    attach,
    detach,
    get_client,
    get_current_agent_scopes,
    get_current_span,
    start_llm_call,
)

from . import _tracing

__all__ = ["BlockedTurn", "TURN", "Turn", "note_block", "open_call", "read_response", "read_event", "resume_of"]

_ATTRIBUTES = {"framework": "openai-agents"}


@dataclass(frozen=True, slots=True)
class BlockedTurn:
    """Where a run stopped: ``agent`` was about to call its model. Continue the run with
    ``Runner.run(resume.agent, resume.input, **resume.run_kwargs)`` (and the run's ``session=``, if it had one).

    ``input`` is what that run must be given so that its first request is the one that was blocked:

    - a run without a session or server-side conversation: the whole conversation so far (the user's input,
      finished tool calls and their outputs);
    - a run with a ``session``: nothing (``[]``). The SDK saved every finished item to the session before the
      blocked turn and puts the session's history in front of a run's input, so giving it the conversation again
      would send the history twice and save it twice; ``session_id`` names the session to pass again;
    - a run chained on the server (``previous_response_id``, ``auto_previous_response_id``,
      ``conversation_id``): the items the server does not have yet, and ``run_kwargs`` names the response or
      conversation they follow.

    Every field is plain data (JSON-able), so a run can be continued in another process."""

    agent: Any
    input: list[Any]
    previous_response_id: str | None = None
    conversation_id: str | None = None
    auto_previous_response_id: bool = False
    session_id: str | None = None

    @property
    def run_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Runner.run``/``run_sync``/``run_streamed`` that put the continued run in the
        blocked run's server-side conversation (empty for a run without one)."""
        kwargs: dict[str, Any] = {}
        if self.conversation_id is not None:
            kwargs["conversation_id"] = self.conversation_id
        if self.previous_response_id is not None:
            kwargs["previous_response_id"] = self.previous_response_id
        if self.auto_previous_response_id:
            kwargs["auto_previous_response_id"] = True
        return kwargs


@dataclass(slots=True)
class Turn:
    """The agent, model and input of the turn in flight, the conversation it belongs to (the run's session or
    the server-side conversation it continues), and the block that stopped it (raised again to a retry of the
    same request, without another blocked span)."""

    agent: Any
    session: Any = None
    auto_previous_response_id: bool = False
    model: Any = None
    input: list[Any] | None = None
    previous_response_id: str | None = None
    conversation_id: str | None = None
    blocked: CircuitBreakerException | None = None
    scope: AgentScope | None = field(default=None)


TURN: ContextVar[Turn | None] = ContextVar("agentwatch_openai_agents_turn", default=None)


def _model_name(model: Any) -> tuple[str | None, str | None]:
    name = getattr(model, "model", None)
    if not isinstance(name, str):
        return None, None
    module = type(model).__module__
    if module.startswith("agents.models.openai"):
        return name, "openai"
    if "litellm" in module and "/" in name:  # LitellmModel("anthropic/claude-…")
        return name, name.split("/", 1)[0]
    return name, None


def open_call(turn: Turn, name: str) -> LLMCall:
    """Check every limit (the agent's scope among them) and open the call. A block is raised with
    ``e.resume`` set and the agent's span marked blocked; a retry of the same turn re-raises it."""
    if turn.blocked is not None:
        raise turn.blocked
    client = get_client()
    scopes: tuple[AgentScope, ...] = ()
    agent_name = getattr(turn.agent, "name", None)
    if client is not None and isinstance(agent_name, str) and agent_name:
        if turn.scope is None:
            turn.scope = client.agent_scope(agent_name)
        scopes = (turn.scope,)
    model, provider = _model_name(turn.model)
    parent = _tracing.current_parent()
    # The breaker's own spans (breaker.triggered, alert.*) are named after the context's innermost agent and go under
    # its current span: make them this turn's (not the agent whose tool runs this one, or none; not a trace of their
    # own, as in the run loop, where no span of ours is current). Nothing to push when they already are (pushing an
    # agent changes no monitor: each is checked once).
    context = get_current_agent_scopes()
    push_agent = bool(scopes) and (not context or context[-1] is not scopes[0])
    push_span = parent is not None and get_current_span() is not parent
    token = attach(parent if push_span else KEEP, agent=scopes[0] if push_agent else None) \
        if push_agent or push_span else None
    try:
        call = start_llm_call(name, model=model, provider=provider, parent=parent, scopes=scopes,
                              input=turn.input, attributes=dict(_ATTRIBUTES))
    except CircuitBreakerException as blocked:
        note_block(turn, blocked, parent)
        raise
    finally:
        if token is not None:
            detach(token)
    return call


def note_block(turn: Turn, blocked: CircuitBreakerException, parent: Span | None = None) -> None:
    """A block of this turn (before the call, or a hard budget's top-up as the request was sent): kept for
    a retry of the same request, given ``e.resume``, and the agent's span marked blocked."""
    turn.blocked = blocked
    if getattr(blocked, "resume", None) is None:
        blocked.resume = resume_of(turn)  # type: ignore[attr-defined]
    if parent is None:
        parent = _tracing.current_parent()
    if parent is not None and parent.kind == "agent":
        _tracing.mark_blocked(parent, blocked)


def resume_of(turn: Turn) -> BlockedTurn:
    """What continues a run from ``turn`` (see ``BlockedTurn``)."""
    session = turn.session
    if session is not None:  # the SDK has saved the whole input to the session already (see BlockedTurn)
        session_id = getattr(session, "session_id", None)
        return BlockedTurn(turn.agent, [], session_id=session_id if isinstance(session_id, str) else None)
    return BlockedTurn(turn.agent, list(turn.input or ()), previous_response_id=turn.previous_response_id,
                       conversation_id=turn.conversation_id,
                       auto_previous_response_id=turn.auto_previous_response_id)


def _set_usage(call: LLMCall, usage: Any) -> None:
    input_tokens = getattr(usage, "input_tokens", None)
    output_tokens = getattr(usage, "output_tokens", None)
    if not (input_tokens or output_tokens):  # no usage sent: what the HTTP layer read or estimated stands
        return
    details = getattr(usage, "input_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    written = getattr(details, "cache_write_tokens", None) if details is not None else None
    call.set_usage(input_tokens, output_tokens, cached, written or None)


def _output_text(items: Any) -> str | None:
    texts = [getattr(part, "text", None) for item in items or () if getattr(item, "type", None) == "message"
             for part in getattr(item, "content", None) or ()]
    found = [text for text in texts if isinstance(text, str)]
    return "".join(found) if found else None


def read_response(call: LLMCall, response: Any) -> None:
    """A ``ModelResponse``: usage (the SDK's, in the Responses convention) and output text."""
    _set_usage(call, getattr(response, "usage", None))
    text = _output_text(getattr(response, "output", None))
    if text is not None:
        call.set_output(text)


def read_event(call: LLMCall, event: Any) -> None:
    """One streamed event: the first text delta, and the final response's usage, model and output."""
    kind = getattr(event, "type", None)
    if kind == "response.output_text.delta":
        call.mark_first_token()
    elif kind in ("response.completed", "response.incomplete"):
        response = getattr(event, "response", None)
        _set_usage(call, getattr(response, "usage", None))
        text = _output_text(getattr(response, "output", None))
        if text is not None:
            call.set_output(text)
