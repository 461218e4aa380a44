"""A block inside an agent's run reaches the caller of ``await agent.run(...)`` / ``await handler``.

LlamaIndex's agents (``BaseWorkflowAgent``: ``FunctionAgent``, ``ReActAgent``, ``CodeActAgent``; and
``AgentWorkflow``) turn two kinds of errors into something else, a block among them:

- the structured-output call of ``parse_agent_output`` (``output_cls``: ``generate_structured_response``) is wrapped
  in ``except Exception``, which makes any error a ``UserWarning`` and ends the run with
  ``structured_response=None``. Inside that step, a block leaves ``generate_structured_response`` as a
  ``BlockCarrier`` (not an ``Exception``), and the step raises the block in its place.
  The program's own ``structured_output_fn`` runs inside the same ``except Exception``: a block of a LlamaIndex LLM
  call it makes leaves that call as a carrier already (``carried``, where the legacy callback raises it).
- ``_call_tool`` makes any error of a tool the tool's output (``is_error=True``), fed to the model. A block raised
  inside a tool (an agent used as a tool, out of its budget) is raised by the ``call_tool`` step instead: the run
  fails with it, as with a block of the agent's own LLM call, and nothing more is sent to the model.

``AgentWorkflow._call_tool`` also runs the tool in the scope of the agent whose tool it is, read where
``AgentWorkflow`` reads it (its context store), when the step is not in that scope already: a run resumed from a saved
context (``Context.from_dict``, a human's answer awaited) starts with the paused tool, before any event has named
the agent, and its calls would otherwise escape that agent's limits.

Patched on the classes when the first workflow run starts with LlamaIndex's agent modules loaded (nothing is
imported for it); ``remove()`` puts the originals back.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import (
    BlockCarrier,
    attach,
    detach,
    get_client,
    get_current_agent_scopes,
    swallow_internal_error,
)

__all__ = ["patch_if_loaded", "unpatch", "carried"]

#: LlamaIndex's agent modules → the class of each whose steps are patched.
_MODULES = {"llama_index.core.agent.workflow.base_agent": "BaseWorkflowAgent",
            "llama_index.core.agent.workflow.multi_agent_workflow": "AgentWorkflow"}

_lock = threading.Lock()
#: (owner, attribute, original) for every patch made, to put back.
_patched: list[tuple[Any, str, Any]] = []
_done = False

#: True while a ``parse_agent_output`` wrapper is there to turn a carrier back into its block.
_CARRYING: ContextVar[bool] = ContextVar("agentwatch_llamaindex_carrying", default=False)


def carried(blocked: CircuitBreakerException) -> BaseException:
    """What a block raised by a LlamaIndex call leaves it as: a carrier inside ``parse_agent_output`` (the program's
    ``structured_output_fn`` would meet LlamaIndex's ``except Exception`` next), else the block itself."""
    return BlockCarrier(blocked) if _CARRYING.get() else blocked


def _carry_blocks(original: Callable[..., Any]) -> Callable[..., Any]:
    """``generate_structured_response``: its block leaves past ``parse_agent_output``'s ``except Exception``."""

    @functools.wraps(original)
    async def generate_structured_response(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except CircuitBreakerException as blocked:
            if _CARRYING.get():
                raise BlockCarrier(blocked) from None
            raise

    return generate_structured_response


def _raise_carried(original: Callable[..., Any]) -> Callable[..., Any]:
    """The ``parse_agent_output`` step (``functools.wraps`` keeps its ``@step`` config and signature)."""

    @functools.wraps(original)
    async def parse_agent_output(self: Any, *args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(self, *args, **kwargs)
        token = _CARRYING.set(True)
        try:
            return await original(self, *args, **kwargs)
        except BlockCarrier as passing:
            blocked = passing.blocked
        finally:
            _CARRYING.reset(token)
        raise blocked  # outside the handler: the block's context stays what it was, not our carrier

    return parse_agent_output


def _raise_tool_blocks(original: Callable[..., Any]) -> Callable[..., Any]:
    """``_call_tool``: a block raised inside the tool is raised, not handed to the model as the tool's error."""

    @functools.wraps(original)
    async def _call_tool(self: Any, *args: Any, **kwargs: Any) -> Any:
        output = await original(self, *args, **kwargs)
        blocked = getattr(output, "exception", None)
        if isinstance(blocked, CircuitBreakerException) and get_client() is not None:
            raise blocked
        return output

    return _call_tool


def _in_current_agents_scope(original: Callable[..., Any]) -> Callable[..., Any]:
    """``AgentWorkflow._call_tool``: the tool runs in the scope of the agent whose turn it is."""

    @functools.wraps(original)
    async def _call_tool(self: Any, ctx: Any, *args: Any, **kwargs: Any) -> Any:
        client = get_client()
        if client is None:
            return await original(self, ctx, *args, **kwargs)
        token = await _enter_current_agents_scope(client, ctx)
        if token is None:
            return await original(self, ctx, *args, **kwargs)
        try:
            return await original(self, ctx, *args, **kwargs)
        finally:
            detach(token)

    return _call_tool


async def _enter_current_agents_scope(client: Any, ctx: Any) -> tuple[Any, ...] | None:
    try:
        name = await ctx.store.get("current_agent_name", default=None)
        scopes = get_current_agent_scopes()
        if not isinstance(name, str) or not name or (scopes and scopes[-1].name == name):
            return None
        return attach(agent=client.agent_scope(name))
    except Exception:
        swallow_internal_error("the LlamaIndex plugin (the agent of a tool call)")
        return None


_WRAPPERS: tuple[tuple[str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...] = (
    ("parse_agent_output", _raise_carried),
    ("_call_tool", _raise_tool_blocks),
)
#: Patched on one class only (after ``_WRAPPERS``).
_CLASS_WRAPPERS: dict[str, tuple[tuple[str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...]] = {
    "AgentWorkflow": (("_call_tool", _in_current_agents_scope),),
}


def patch_if_loaded() -> None:
    """Patch LlamaIndex's agents once their modules are loaded (hot path: one global read once done)."""
    global _done
    if _done:
        return
    modules = {name: sys.modules.get(name) for name in _MODULES}
    if None in modules.values():
        return  # not imported yet (nothing of it can be running): again at the next workflow run
    with _lock:
        if _done:
            return
        for module_name, module in modules.items():
            _patch(module, "generate_structured_response", _carry_blocks)
            cls = getattr(module, _MODULES[module_name], None)
            if isinstance(cls, type):
                for name, wrapper in (*_WRAPPERS, *_CLASS_WRAPPERS.get(cls.__name__, ())):
                    _patch(cls, name, wrapper)
        _done = True


def _patch(owner: Any, name: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = vars(owner).get(name)
    if original is None or not callable(original):  # another LlamaIndex than the one this was written for
        return
    setattr(owner, name, wrapper(original))
    _patched.append((owner, name, original))


def unpatch() -> None:
    global _done
    with _lock:
        for owner, name, original in reversed(_patched):
            setattr(owner, name, original)
        _patched.clear()
        _done = False
