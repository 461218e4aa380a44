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
or one outside that agent, may be allowed). ``batch``/``abatch`` run each runnable for every input still failing:
an input blocked so gets its block back from each fallback without it running (one blocked span per input).

Both patches are made when a chain run first starts with the wrapper's module imported, or once ``with_fallbacks()``
has imported it (a fallbacks' ``batch`` is looked up before its run starts): importing
``langchain_core.runnables.retry`` for a program that never retries would cost it its import time.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from uuid import UUID

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import enclosing_monitors, imported_module, stop_on_exception

from ._runs import RUNS, key_of

__all__ = ["RETRY_MODULE", "FALLBACKS_MODULE", "RUNNABLES_MODULE", "PENDING", "forget_error_wrappers",
           "install_error_wrappers", "patch_imported_wrappers"]

#: The wrappers' modules (what ``PENDING`` may hold).
RETRY_MODULE, FALLBACKS_MODULE = "langchain_core.runnables.retry", "langchain_core.runnables.fallbacks"
#: Where ``Runnable`` (its ``with_fallbacks``) is defined.
RUNNABLES_MODULE = "langchain_core.runnables.base"

Patch = Callable[[Any, str, Any], None]
WhenImported = Callable[[str, Callable[[ModuleType], None]], None]

#: The wrappers' modules not patched yet, with what patches each (empty once both are, or after ``uninstall``).
PENDING: dict[str, Callable[[], None]] = {}
_lock = threading.Lock()


def install_error_wrappers(patch: Patch, when_imported: WhenImported) -> None:
    """Patch the wrappers whose modules are imported now, the others as a chain run starts once they are
    (``patch_imported_wrappers``). ``patch(owner, name, new)`` replaces an attribute, keeping the original for
    ``uninstall``; ``Runnable.with_fallbacks`` is patched when ``when_imported`` says its module is (not imported here:
    this may run while LangChain's own imports are half way, its callback manager's import having led here)."""
    with _lock:
        PENDING.update({RETRY_MODULE: lambda: _patch_retry(patch), FALLBACKS_MODULE: lambda: _patch_fallbacks(patch)})
    when_imported(RUNNABLES_MODULE, functools.partial(_patch_with_fallbacks, patch))
    patch_imported_wrappers()


def _patch_with_fallbacks(patch: Patch, module: ModuleType) -> None:
    original = module.Runnable.__dict__.get("with_fallbacks")
    if callable(original):
        patch(module.Runnable, "with_fallbacks", _patching_wrappers_after(original))


def _patching_wrappers_after(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def with_fallbacks(self: Any, *args: Any, **kwargs: Any) -> Any:
        wrapper = original(self, *args, **kwargs)
        if PENDING:
            stop_on_exception(patch_imported_wrappers)()
        return wrapper

    return with_fallbacks


def forget_error_wrappers() -> None:
    with _lock:
        PENDING.clear()


def patch_imported_wrappers() -> None:
    """Patch a wrapper whose module is imported by now. Called by a chain run's start once a module ``PENDING`` holds
    is imported (the caller looks them up first): a wrapper's run is one, and reads what is patched only after its
    start, however it was built (``with_retry()``, or ``RunnableRetry(bound=...)`` as LangChain's docstrings show)."""
    modules = sys.modules
    if (RETRY_MODULE in modules and RETRY_MODULE in PENDING) or (
            FALLBACKS_MODULE in modules and FALLBACKS_MODULE in PENDING):
        with _lock:
            # A module still being imported may not define its wrapper yet: patched at a later chain start.
            for module in [module for module in PENDING if imported_module(module) is not None]:
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
    module = sys.modules.get(FALLBACKS_MODULE)
    original = getattr(module, "set_config_context", None)
    if callable(original):  # each attempt (invoke, stream and their async forms) runs under it
        patch(module, "set_config_context", _attempt_passing_a_block(original))
    wrappers = getattr(module, "RunnableWithFallbacks", None)
    if wrappers is not None:
        for name, wrap in (("batch", _batch_passing_a_block), ("abatch", _abatch_passing_a_block)):
            if callable(wrappers.__dict__.get(name)):
                patch(wrappers, name, wrap(wrappers.__dict__[name]))


def passes_fallbacks(error: BaseException, run_id: UUID) -> bool:
    """A block no fallback could get past, or should hide: every monitor's but the primary model's own agents' (its
    own ``AgentWatchHandler(agent=...)``), which a fallback outside that agent may pass; except a hard budget's
    refusal of one call's worst case, which a cheaper fallback may fit."""
    if not isinstance(error, CircuitBreakerException) or error.reserved is not None:
        return False
    if error.scope != "agent":  # global, a trace(budget=...), a LangGraph thread's budget
        return True
    run = RUNS.get(key_of(run_id))  # the fallbacks run: its agents are every fallback's too
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


def _batch_passing_a_block(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def batch(self: Any, *args: Any, **kwargs: Any) -> Any:
        return original(_attempts_passing_a_block(self), *args, **kwargs)

    return batch


def _abatch_passing_a_block(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def abatch(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await original(_attempts_passing_a_block(self), *args, **kwargs)

    return abatch


@stop_on_exception(default=None)
def _with_attempts(wrapper: Any) -> Any:
    return wrapper.model_copy(update={"runnable": _Attempt(wrapper.runnable),
                                      "fallbacks": [_Attempt(fallback) for fallback in wrapper.fallbacks]})


def _attempts_passing_a_block(wrapper: Any) -> Any:
    """The ``RunnableWithFallbacks`` whose batch runs its runnable and each fallback through an ``_Attempt``."""
    copy = _with_attempts(wrapper)
    return wrapper if copy is None else copy


class _Attempt:
    """A runnable of a ``RunnableWithFallbacks`` batch (``batch``/``abatch`` are all LangChain asks of it there; the
    rest is the runnable's own): an input whose earlier attempt met a block no fallback gets past
    (``passes_fallbacks``) gets that block back as its output, without running; the others run."""

    __slots__ = ("_runnable",)

    def __init__(self, runnable: Any) -> None:
        self._runnable = runnable

    def __getattr__(self, name: str) -> Any:
        """Anything else is the runnable's: a subclass of ``RunnableWithFallbacks`` may read ``self.runnable.name``."""
        if name == "_runnable":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._runnable, name)

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        blocked, to_run = _blocked_inputs(config)
        outputs = self._runnable.batch([inputs[i] for i in to_run], [config[i] for i in to_run], **kwargs) \
            if to_run else []
        return _merged(blocked, to_run, outputs, config)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        blocked, to_run = _blocked_inputs(config)
        outputs = await self._runnable.abatch([inputs[i] for i in to_run], [config[i] for i in to_run], **kwargs) \
            if to_run else []
        return _merged(blocked, to_run, outputs, config)


def _fallbacks_run(config: Any) -> UUID | None:
    return getattr(config.get("callbacks"), "parent_run_id", None)  # the input's fallbacks run (its child manager)


def _blocked_inputs(configs: list[Any]) -> tuple[list[Any], list[int]]:
    """Per input, the block its fallbacks run met (or None); and the inputs to run."""
    blocked = [_BLOCKED_RUNS.get(run_id) if (run_id := _fallbacks_run(config)) is not None else None
               for config in configs]
    return blocked, [index for index, block in enumerate(blocked) if block is None]


def _merged(blocked: list[Any], ran: list[int], outputs: list[Any], configs: list[Any]) -> list[Any]:
    results = list(blocked)
    for index, output in zip(ran, outputs, strict=True):
        results[index] = output
        run_id = _fallbacks_run(configs[index])
        if run_id is not None:
            _remember(run_id, output if isinstance(output, BaseException) else None)
    return results
