"""Keep the host program alive: internal errors are logged and swallowed, never raised."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

if TYPE_CHECKING:
    import logging

    from ._breaker_contract import CircuitBreakerException

__all__ = ["logger", "stop_on_exception", "swallow_internal_error", "swallow_user_error", "guard_exporter",
           "PASS_THROUGH", "add_pass_through", "BlockCarrier"]


class _Logger:
    """``logging.getLogger("agentwatch")``, with the logging module imported only when a message may go somewhere: one
    at WARNING or above, or any once the program has imported logging. Until then no handler or level can have been
    set, so a DEBUG or INFO message (``init()`` writes some) goes nowhere: logging and what it imports (traceback,
    string, textwrap) were ~6 ms of ``import agentwatch`` in a program that had not imported them."""

    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger: logging.Logger | None = None

    def _real(self) -> logging.Logger:
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger("agentwatch")
        return logger

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._logger is not None or "logging" in sys.modules:
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # the record names our caller, not this method
            self._real().debug(msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._logger is not None or "logging" in sys.modules:
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            self._real().info(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


logger = cast("logging.Logger", _Logger())

F = TypeVar("F", bound=Callable[..., Any])

#: Exceptions that are raised into user code on purpose (the breaker's), registered by the breaker module.
PASS_THROUGH: list[type[BaseException]] = []


def add_pass_through(*kinds: type[BaseException]) -> None:
    """Let these exceptions through ``stop_on_exception`` as well, like ``CircuitBreakerException``: a
    framework's control flow that travels as exceptions (LangGraph's ``GraphBubbleUp``) raised in our code."""
    for kind in kinds:
        if kind not in PASS_THROUGH:
            PASS_THROUGH.append(kind)


def _is_pass_through(exc: BaseException) -> bool:
    return any(isinstance(exc, kind) for kind in PASS_THROUGH)


def swallow_internal_error(where: str) -> None:
    """Call inside ``except Exception``: a block (``PASS_THROUGH``) goes on to the caller; any other error is
    logged and the caller carries on. ``stop_on_exception`` is this around a whole function; per-call code
    where its extra frame costs calls it directly."""
    error = sys.exc_info()[1]
    if error is not None and _is_pass_through(error):
        raise error
    logger.exception("agentwatch: internal error in %s (ignored)", where)


def swallow_user_error(callback: str) -> None:
    """Call inside ``except Exception`` around a callback the program gave us (``on_block``, ``on_alert``): a block
    goes on to the caller; any other error is the program's bug, logged as such (with its traceback), and we carry on.
    Not worded as an internal error: the user must see it is their callback that failed."""
    error = sys.exc_info()[1]
    if error is not None and _is_pass_through(error):
        raise error
    _log_user_error(f"{callback} callback", error, "as if it had returned")


def _log_user_error(what: str, error: BaseException | None, carrying_on: str = "") -> None:
    """The one wording for code of the program's that we call and that raised: its bug, not ours, with its traceback."""
    logger.error("agentwatch: your %s raised %r; ignored, AgentWatch carries on%s", what, error,
                 f" {carrying_on}" if carrying_on else "", exc_info=error)


def guard_exporter(exporter: object, method: str, default: Any = None) -> Callable[..., Any]:
    """``exporter.<method>`` (``export``, ``force_flush``, ``shutdown``) logging and swallowing what it raises: for an
    exporter of ours an internal error; for the program's own (``init(exporters=[MyExporter()])``) its failure, worded
    so the user sees it is their exporter, with ``default`` returned (``export``: the batch counts as failed)."""
    bound = getattr(exporter, method, None)
    if bound is None:
        # Only ``export`` is required of the program's exporter (``init`` checks it): one without ``force_flush`` or
        # ``shutdown`` holds nothing to flush or release. ``agentwatch.flush()`` and ``shutdown()`` raised
        # AttributeError into the program for it.
        return _flushed if method == "force_flush" else _nothing_to_do
    kind = type(exporter)
    if kind.__module__.partition(".")[0] == "agentwatch":
        return stop_on_exception(bound, default=default)  # type: ignore[no-any-return]
    name = f"{kind.__qualname__}.{method}"

    def call(*args: Any) -> Any:
        try:
            return bound(*args)
        except Exception as error:
            _log_user_error(f"exporter {name}", error, "(its batch counts as failed)" if method == "export" else "")
            return default

    return call


def _flushed(*_args: Any) -> bool:
    return True


def _nothing_to_do(*_args: Any) -> None:
    return None


@overload
def stop_on_exception(func: F, *, default: Any = None) -> F: ...
@overload
def stop_on_exception(func: None = None, *, default: Any = None) -> Callable[[F], F]: ...


def stop_on_exception(func: F | None = None, *, default: Any = None) -> Any:
    """Decorate a function so an internal error is logged and ``default`` returned instead.

    Only the exceptions registered in ``PASS_THROUGH`` (``CircuitBreakerException``) propagate: a block
    is the one thing the SDK raises into user code, deliberately.
    """

    def decorate(inner: F) -> F:
        # Named once, here: a callable without a qualified name (a functools.partial) must not turn the error being
        # swallowed into an AttributeError raised into the program.
        where = getattr(inner, "__qualname__", None) or repr(inner)
        if inspect.iscoroutinefunction(inner):

            @functools.wraps(inner)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await inner(*args, **kwargs)
                except Exception:
                    swallow_internal_error(where)
                    return default

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            except Exception:
                swallow_internal_error(where)
                return default

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


class BlockCarrier(BaseException):
    """A block on its way past a framework's ``except Exception`` (a retry loop that would hand it to a retry policy,
    a step that would turn it into a warning): not an ``Exception``, so such code lets it through; the plugin's code
    outside raises ``blocked`` in its place. Never seen by the program."""

    __slots__ = ("blocked",)

    def __init__(self, blocked: CircuitBreakerException) -> None:
        super().__init__(str(blocked))
        self.blocked = blocked
