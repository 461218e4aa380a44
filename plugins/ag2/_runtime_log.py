"""The observing layer for classic AG2: the completion reports ``OpenAIWrapper.create`` makes for the runtime log.

AG2 reports each completion to its runtime logger (``autogen.runtime_logging``): its own cost figure for the request
just sent, cache hits (nothing sent) and provider errors of failed configs. A completion's report ends the call of
its request (opened when its config's client sent it, ``_llm``) with AG2's cost figure; a cache hit is recorded as a
span no limit counts.

The runtime log itself is the application's and stays exactly as the application sets it, before or after
``init()``: no logger of ours is started, ``logging_enabled()`` answers as without AgentWatch, and the
application's logger gets exactly the records it gets without AgentWatch. Only the names that
``autogen.oai.client`` imported from ``runtime_logging`` are replaced there: that module always makes its
completion report (to us), and passes on to the runtime log only what AG2 would have logged anyway.
"""

from __future__ import annotations

from typing import Any

from ._llm import observe_completion

__all__ = ["install", "uninstall"]

# name in autogen.oai.client -> (original, ours), while installed
_replaced: dict[str, tuple[Any, Any]] = {}


def _logging_enabled() -> bool:
    return True  # only in autogen.oai.client: its completion reports reach ``_log_chat_completion``


def _log_chat_completion(*args: Any, **kwargs: Any) -> None:
    from autogen import runtime_logging

    response = kwargs["response"] if "response" in kwargs else args[5] if len(args) > 5 else None
    is_cached = kwargs["is_cached"] if "is_cached" in kwargs else args[6] if len(args) > 6 else 0
    cost = kwargs["cost"] if "cost" in kwargs else args[7] if len(args) > 7 else None
    observe_completion(response, is_cached, cost)
    if runtime_logging.logging_enabled():  # what AG2 would have logged: the application's runtime log
        runtime_logging.log_chat_completion(*args, **kwargs)


def _only_if_logging(name: str) -> Any:
    def forward(*args: Any, **kwargs: Any) -> None:
        from autogen import runtime_logging

        if runtime_logging.logging_enabled():
            getattr(runtime_logging, name)(*args, **kwargs)

    return forward


def install() -> None:
    from autogen.oai import client as oai_client

    if _replaced:
        return
    ours = {"logging_enabled": _logging_enabled, "log_chat_completion": _log_chat_completion,
            "log_new_wrapper": _only_if_logging("log_new_wrapper"),
            "log_new_client": _only_if_logging("log_new_client")}
    for name, replacement in ours.items():
        original = oai_client.__dict__.get(name)
        if original is None:
            continue  # another AG2 layout: leave it as it is
        _replaced[name] = (original, replacement)
        setattr(oai_client, name, replacement)


def uninstall() -> None:
    from autogen.oai import client as oai_client

    for name, (original, replacement) in _replaced.items():
        if oai_client.__dict__.get(name) is replacement:  # someone who replaced it after us keeps theirs
            setattr(oai_client, name, original)
    _replaced.clear()
