"""A block inside LangChain's own error wrappers, ``with_retry()`` and ``with_fallbacks()``.

``RunnableRetry`` retries every ``Exception`` by default, with seconds of backoff between attempts: a block would be
tried again (and fire ``on_block``, and leave a blocked span) as many times as attempts are allowed, and reach the
caller only after the backoff, though a limit that blocked does not lift in seconds. A block stops the retries at
once, as LangGraph's ``RetryPolicy`` does (the block is a ``GraphBubbleUp`` there), unless the program names
``CircuitBreakerException`` among the exception types to retry.

``RunnableWithFallbacks`` tries each fallback after an ``Exception``. A block of a monitor enclosing the wrapper (the
global one open or paused or its hourly budget spent, a ``trace(budget=...)`` or a LangGraph thread's budget spent, an
agent the wrapper runs in) would block every fallback's model call too, and a fallback answering without a model would
hide the block: the remaining fallbacks are not tried and the block reaches the caller. A block of the primary model's
own agent, or a hard budget refusing the worst case of that one call, falls back as any error does (a cheaper model,
or one outside that agent, may be allowed).

Both patches are made when a chain run first starts with the wrapper's module imported: importing
``langchain_core.runnables.retry`` for a program that never retries would cost it its import time.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import enclosing_monitors, stop_on_exception

from ._runs import RUNS

__all__ = ["PENDING", "forget_error_wrappers", "install_error_wrappers", "patch_imported_wrappers"]

_RETRY, _FALLBACKS = "langchain_core.runnables.retry", "langchain_core.runnables.fallbacks"

Patch = Callable[[Any, str, Any], None]

#: The wrappers' modules not patched yet, with what patches each (empty once both are, or after ``uninstall``).
PENDING: dict[str, Callable[[], None]] = {}
_lock = threading.Lock()


def install_error_wrappers(patch: Patch) -> None:
    """Patch the wrappers whose modules are imported now, the others as a chain run starts once they are
    (``patch_imported_wrappers``). ``patch(owner, name, new)`` replaces an attribute, keeping the original for
    ``uninstall``."""
    with _lock:
        PENDING.update({_RETRY: lambda: _patch_retry(patch), _FALLBACKS: lambda: _patch_fallbacks(patch)})
    patch_imported_wrappers()


def forget_error_wrappers() -> None:
    with _lock:
        PENDING.clear()


def patch_imported_wrappers() -> None:
    """Patch a wrapper whose module is imported by now. Called as each chain run starts (the caller checks ``PENDING``
    first): a wrapper's run is one, and reads what is patched only after its start, however it was built
    (``with_retry()``, or ``RunnableRetry(bound=...)`` as LangChain's docstrings show)."""
    modules = sys.modules
    if (_RETRY in modules and _RETRY in PENDING) or (_FALLBACKS in modules and _FALLBACKS in PENDING):
        with _lock:
            for module in [module for module in PENDING if module in modules]:
                try:
                    PENDING[module]()
                finally:  # a failed patch is logged once (by the caller), not at every chain run
                    del PENDING[module]


# ---- with_retry ----------------------------------------------------------------------------------------------------


def _patch_retry(patch: Patch) -> None:
    from langchain_core.runnables.retry import RunnableRetry
    from tenacity.stop import stop_base

    class StopAtABlock(stop_base):
        """The attempt just made was blocked."""

        def __call__(self, retry_state: Any) -> bool:
            outcome = retry_state.outcome
            return bool(outcome is not None and outcome.failed
                        and isinstance(outcome.exception(), CircuitBreakerException))

    original = RunnableRetry.__dict__.get("_kwargs_retrying")
    if isinstance(original, property) and original.fget is not None:
        patch(RunnableRetry, "_kwargs_retrying", property(_stopping_at_a_block(original.fget, StopAtABlock())))


def _stopping_at_a_block(original: Callable[[Any], dict[str, Any]], at_a_block: Any) -> Callable[[Any], dict[str, Any]]:
    """tenacity's arguments of a ``RunnableRetry``, with a stop at a block. A stop (not a narrower ``retry``) keeps
    ``batch`` as it is: the failed inputs come back as their errors, the invoke paths re-raise the block itself."""

    @functools.wraps(original)
    def kwargs_retrying(self: Any) -> dict[str, Any]:
        kwargs = original(self)
        if not _retries_blocks_on_purpose(self.retry_exception_types):
            stop = kwargs.get("stop")
            kwargs["stop"] = at_a_block if stop is None else stop | at_a_block
        return kwargs

    return kwargs_retrying


def _retries_blocks_on_purpose(kinds: Any) -> bool:
    return isinstance(kinds, tuple) and any(
        isinstance(kind, type) and issubclass(kind, CircuitBreakerException) for kind in kinds)


# ---- with_fallbacks ------------------------------------------------------------------------------------------------


def _patch_fallbacks(patch: Patch) -> None:
    module = sys.modules.get(_FALLBACKS)
    original = getattr(module, "set_config_context", None)
    if callable(original):  # each attempt (invoke, stream and their async forms) runs under it
        patch(module, "set_config_context", _attempt_passing_a_block(original))


def passes_fallbacks(error: BaseException, run_id: UUID) -> bool:
    """A block no fallback could get past, or should hide: every monitor's but the primary model's own agents' (its
    own ``AgentWatchHandler(agent=...)``), which a fallback outside that agent may pass; except a hard budget's
    refusal of one call's worst case, which a cheaper fallback may fit."""
    if not isinstance(error, CircuitBreakerException) or error.reserved is not None:
        return False
    if error.scope != "agent":  # global, a trace(budget=...), a LangGraph thread's budget
        return True
    run = RUNS.get(run_id)  # the fallbacks run: its agents are every fallback's too
    return any(monitor is error.monitor for monitor in enclosing_monitors(scopes=run.scopes if run else ()))


#: The block met by an attempt of a ``RunnableWithFallbacks`` run (by its run id): its next attempts raise it
#: instead of running. Kept while the block lives (the run raises it to its caller at the end).
_BLOCKED_RUNS: weakref.WeakValueDictionary[UUID, CircuitBreakerException] = weakref.WeakValueDictionary()


def _attempt_passing_a_block(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    @contextlib.contextmanager
    def set_config_context(config: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        run_id = getattr(config.get("callbacks"), "parent_run_id", None)  # the fallbacks run's (its child manager)
        blocked = _BLOCKED_RUNS.get(run_id) if run_id is not None else None
        if blocked is not None:
            raise blocked
        with original(config, *args, **kwargs) as context:
            try:
                yield context
            except BaseException as error:
                if run_id is not None:
                    _remember(run_id, error)
                raise
            else:
                if run_id is not None:
                    _remember(run_id, None)

    return set_config_context


@stop_on_exception
def _remember(run_id: UUID, error: BaseException | None) -> None:
    if error is not None and passes_fallbacks(error, run_id):
        _BLOCKED_RUNS[run_id] = error  # type: ignore[assignment]
    else:
        _BLOCKED_RUNS.pop(run_id, None)
