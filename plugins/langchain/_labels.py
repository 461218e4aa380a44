"""The program's own tags and metadata of a LangChain run (``config={"tags": [...], "metadata": {...}}``, a runnable's
``with_config``), kept on its span as LangSmith and Langfuse show them: ``tags`` (a list) and ``metadata`` (a dict,
merged into what ``agentwatch.set_metadata`` gave the span).

LangChain and LangGraph put labels of their own in the same places (``seq:step:1``, ``graph:step:2``,
``langsmith:hidden``; ``ls_model_name``, ``lc_versions``, ``langgraph_node``, ``checkpoint_ns``, ``thread_id``): those
are left out (a node's are attributes of their own). Bounded:
``MAX_LABELS`` of each, every text at most ``LABEL_TEXT_LIMIT`` characters. Metadata can carry any text (a user's
question), so neither is kept under ``zero_data_retention``.

Labels are put on a model's span before its limits are checked (a blocked span keeps them), so labelling never raises:
a value with no text (its ``str()`` raises) is kept as ``"<unprintable>"``, and anything else going wrong loses the
labels, not the check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from agentwatch.instrumentation import bounded, swallow_internal_error

__all__ = ["MAX_LABELS", "LABEL_TEXT_LIMIT", "add_labels"]

#: Tags, and metadata keys, kept per span.
MAX_LABELS: Final = 32
#: Characters kept of a tag, a metadata key or a text in a metadata value.
LABEL_TEXT_LIMIT: Final = 256
#: What a tag, key or value whose ``str()`` raises is kept as.
UNPRINTABLE: Final = "<unprintable>"

_OWN_TAG_PREFIXES: Final = ("seq:step:", "graph:step:", "map:key:", "langsmith:", "langgraph:")
_OWN_KEY_PREFIXES: Final = ("ls_", "lc_", "langgraph_", "checkpoint_", "__")
#: Keys LangGraph copies from ``configurable`` into every run's metadata; ``thread_id`` is the span's session.
_OWN_KEYS: Final = frozenset({"thread_id", "checkpoint_ns", "checkpoint_id", "run_attempt", "run_id", "assistant_id",
                              "graph_id"})
#: Metadata keys found to be LangChain's own so far: a model call's metadata is usually only those (``ls_provider``,
#: ``ls_model_name``, ...), told apart by one set comparison instead of a test per key on every call.
_SEEN_OWN: set[str] = set()
_MAX_SEEN: Final = 1024


def add_labels(attributes: dict[str, Any], tags: Sequence[str] | None, metadata: Mapping[str, Any] | None,
               zero_data_retention: bool) -> None:
    """Put the program's ``tags`` and ``metadata`` of a run in the span ``attributes``; never raises."""
    if zero_data_retention or not (tags or metadata):
        return
    try:
        _add_labels(attributes, tags, metadata)
    except Exception:
        swallow_internal_error("LangChain tags and metadata")


def _add_labels(attributes: dict[str, Any], tags: Sequence[str] | None, metadata: Mapping[str, Any] | None) -> None:
    if tags:
        own = [text for text in map(_text, tags) if not text.startswith(_OWN_TAG_PREFIXES)]
        if own:
            attributes["tags"] = own[:MAX_LABELS]
    if metadata and not _SEEN_OWN.issuperset(metadata):
        kept: dict[str, Any] = {}
        for key, value in metadata.items():
            name = _text(key)
            if name in _OWN_KEYS or name.startswith(_OWN_KEY_PREFIXES):
                if len(_SEEN_OWN) < _MAX_SEEN:
                    _SEEN_OWN.add(name)
                continue
            if len(kept) == MAX_LABELS:
                break
            kept[name] = _bounded(value)
        if kept:
            given = attributes.get("metadata")
            attributes["metadata"] = {**given, **kept} if isinstance(given, dict) else kept


def _text(value: Any) -> str:
    """``value``'s text, clipped; a program's object whose ``str()`` raises is only that label lost."""
    try:
        text = value if value.__class__ is str else str(value)
    except Exception:
        return UNPRINTABLE
    return text if len(text) <= LABEL_TEXT_LIMIT else text[:LABEL_TEXT_LIMIT]


def _bounded(value: Any) -> Any:
    if value is None or value.__class__ in (bool, int, float):
        return value
    if isinstance(value, str):
        return _text(value)
    try:
        return bounded(value)  # a structure: each of its texts at most TEXT_LIMIT (what captured text is held to)
    except Exception:
        return UNPRINTABLE
