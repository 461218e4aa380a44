"""The one rule for prompt and output text: whether it is kept, and how long a kept text may be.

Every plugin asks ``capturing()`` before it builds or records text (prompts, outputs, tool arguments and
results, queries, a task description used as a name), so ``capture_messages`` and ``zero_data_retention``
mean the same everywhere. Text that is kept is bounded once, when a span ends (``Client.end_span``, before
it is queued, so the queue holds bounded spans): every string at most ``TEXT_LIMIT`` characters, whichever
plugin recorded it. ``clip`` is the same bound for a text a plugin makes itself (an object's ``str``, an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from . import _client as _client_module

if TYPE_CHECKING:
    from ._client import Client
    from ._span import Span

__all__ = ["TEXT_LIMIT", "NOT_KEPT", "capturing", "clip", "clip_error", "bounded", "bound_text"]

#: Characters kept of one captured string (a prompt, an output, a tool's arguments, an error message).
TEXT_LIMIT: Final = 4000
#: Nesting kept of a captured structure; deeper parts become their clipped ``str``.
_MAX_DEPTH: Final = 32


def capturing(client: Client | None = None) -> bool:
    """Whether text may be kept now: asked for (``capture_messages``) and no zero data retention.

    ``client`` is the active client when not given; without one nothing is kept."""
    if client is None:
        client = _client_module._active
    return client is not None and client.config.capture_text


def clip(value: Any) -> str:
    """``value`` as text (its ``str``), at most ``TEXT_LIMIT`` characters."""
    text = value if value.__class__ is str else str(value)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT]


#: An error's message under zero data retention (``clip_error``).
NOT_KEPT: Final = "(message not kept: zero_data_retention)"


def clip_error(value: Any) -> str:
    """An error's message as a span keeps it (``Span.record_error``): ``clip``ped, or under zero data retention not at
    all. Error texts quote prompts and answers: a provider's 400 can quote the request (Groq's ``failed_generation``
    is the model's answer), LangChain's ``OutputParserException`` holds the model's answer whole, and AG2 hands the
    failed message's content as its error; they were kept under ``zero_data_retention=True``, which promises no prompt
    or response text (the collector's own zero data retention drops ``error.message`` too). The type stays."""
    client = _client_module._active
    if client is not None and client.config.zero_data_retention:
        return NOT_KEPT
    return clip(value)


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` with every string clipped; mappings and sequences copied, other objects as clipped text
    (what the exporters' ``default=str`` would have written, bounded)."""
    if value is None or value.__class__ in (bool, int, float):
        return value
    if isinstance(value, str):
        return value if len(value) <= TEXT_LIMIT else value[:TEXT_LIMIT]
    if depth >= _MAX_DEPTH:
        return clip(value)
    if isinstance(value, Mapping):
        return {key if key.__class__ is str else clip(key): bounded(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(item, depth + 1) for item in value]
    return clip(value)


def bound_text(span: Span) -> None:
    """Bound the text an ended span kept (its input and output)."""
    if span.input is not None:
        span.input = bounded(span.input)
    if span.output is not None:
        span.output = bounded(span.output)
