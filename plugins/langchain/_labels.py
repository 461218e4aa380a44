"""The program's own tags and metadata of a LangChain run (``config={"tags": [...], "metadata": {...}}``, a runnable's
``with_config``), kept on its span as LangSmith and Langfuse show them: ``tags`` (a list) and ``metadata`` (a dict,
merged into what ``agentwatch.set_metadata`` gave the span).

LangChain and LangGraph put labels of their own in the same places (``seq:step:1``, ``graph:step:2``,
``langsmith:hidden``; ``ls_model_name``, ``lc_versions``, ``langgraph_node``, ``checkpoint_ns``, ``thread_id``): those
are left out (a node's are attributes of their own).

Labels are short: LangChain gives every run below the one configured its metadata, so what is kept is kept on each of
their spans. ``MAX_LABELS`` tags and metadata keys; a text (tag, key, value) at most ``LABEL_TEXT_LIMIT`` characters;
a value that is not a text, number, boolean or null (a list, a dict, an object) is kept as a JSON text of it clipped
to ``LABEL_TEXT_LIMIT`` characters, built only as far as that (a long chat history costs nothing). Labels are kept
with ``capture_messages`` off, as LangSmith and Langfuse keep metadata: they are what the program chose to name its
runs by (a user, a tenant); a program putting a user's text there has it on the spans, 256 characters of it. Neither
is kept under ``zero_data_retention``.

Labels are put on a model's span before its limits are checked (a blocked span keeps them), so labelling never raises:
a value with no text (its ``str()`` raises) is kept as ``"<unprintable>"``, and anything else going wrong loses the
labels, not the check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from agentwatch.instrumentation import swallow_internal_error

__all__ = ["MAX_LABELS", "LABEL_TEXT_LIMIT", "SEEN_OWN_KEYS", "add_labels"]

#: Tags, and metadata keys, kept per span.
MAX_LABELS: Final = 32
#: Characters kept of a tag, a metadata key or a metadata value (a structure's as its JSON text).
LABEL_TEXT_LIMIT: Final = 256
#: What a tag, key or value whose ``str()`` raises is kept as.
UNPRINTABLE: Final = "<unprintable>"

_OWN_TAG_PREFIXES: Final = ("seq:step:", "graph:step:", "map:key:", "langsmith:", "langgraph:")
_OWN_KEY_PREFIXES: Final = ("ls_", "lc_", "langgraph_", "checkpoint_", "__")
#: Keys LangGraph copies from ``configurable`` into every run's metadata; ``thread_id`` is the span's session.
_OWN_KEYS: Final = frozenset({"thread_id", "checkpoint_ns", "checkpoint_id", "run_attempt", "run_id", "assistant_id",
                              "graph_id"})
#: Metadata keys found to be LangChain's own so far: a model call's metadata is usually only those (``ls_provider``,
#: ``ls_model_name``, ...), told apart by one set comparison instead of a test per key on every call (made by a model
#: call's start itself, before it calls ``add_labels``).
SEEN_OWN_KEYS: set[str] = set()
#: The same for tags (``graph:step:1``, ``seq:step:2``): a node's and a chain's tags are usually only LangChain's.
_SEEN_OWN_TAGS: set[str] = set()
_MAX_SEEN: Final = 1024


def add_labels(attributes: dict[str, Any], tags: Sequence[str] | None, metadata: Mapping[str, Any] | None,
               zero_data_retention: bool) -> None:
    """Put the program's ``tags`` and ``metadata`` of a run in the span ``attributes``; never raises."""
    if zero_data_retention or not (tags or metadata):
        return
    # The work is in this function's own ``try`` (free until something raises), not in a helper it calls: one frame
    # fewer on every run with tags or metadata, every model call and graph node (~0.4k machine instructions each).
    try:
        if tags:
            try:  # one set comparison when every tag is one seen to be LangChain's already, as for metadata keys
                only_own = _SEEN_OWN_TAGS.issuperset(tags)
            except Exception:  # an unhashable tag (or one whose hash raises): read one by one below
                only_own = False
            if not only_own:
                own: list[str] = []
                for tag in tags:
                    text = tag if tag.__class__ is str and len(tag) <= LABEL_TEXT_LIMIT else _text(tag)
                    if not text.startswith(_OWN_TAG_PREFIXES):
                        own.append(text)
                        if len(own) == MAX_LABELS:
                            break
                    elif text is tag and len(_SEEN_OWN_TAGS) < _MAX_SEEN:  # a text, kept whole: the same next time
                        _SEEN_OWN_TAGS.add(tag)
                if own:
                    attributes["tags"] = own
        if metadata and not SEEN_OWN_KEYS.issuperset(metadata):
            kept: dict[str, Any] = {}
            for key, value in metadata.items():
                if key in SEEN_OWN_KEYS:
                    continue
                name = _text(key)
                if name in _OWN_KEYS or name.startswith(_OWN_KEY_PREFIXES):
                    if len(SEEN_OWN_KEYS) < _MAX_SEEN:
                        SEEN_OWN_KEYS.add(name)
                    continue
                if len(kept) == MAX_LABELS:
                    break
                kept[name] = _label(value)
            if kept:
                given = attributes.get("metadata")
                attributes["metadata"] = {**given, **kept} if isinstance(given, dict) else kept
    except Exception:
        swallow_internal_error("LangChain tags and metadata")


def _text(value: Any) -> str:
    """``value``'s text, clipped; a program's object whose ``str()`` raises is only that label lost."""
    try:
        text = value if value.__class__ is str else str(value)
    except Exception:
        return UNPRINTABLE
    return text if len(text) <= LABEL_TEXT_LIMIT else text[:LABEL_TEXT_LIMIT]


def _label(value: Any) -> Any:
    if value is None or value.__class__ in (bool, int, float):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return _clipped_json(value)
    return _text(value)  # an id, a date, an enum: its text is what the program means by it


def _clipped_json(value: Any) -> str:
    """``value`` as JSON, clipped to ``LABEL_TEXT_LIMIT`` characters: written piece by piece, stopping there."""
    text = ""
    try:
        for piece in _json_pieces(value, 0):
            text += piece
            if len(text) >= LABEL_TEXT_LIMIT:
                return text[:LABEL_TEXT_LIMIT]
    except Exception:  # a structure changed while read, an item whose str() raises
        return text[:LABEL_TEXT_LIMIT] or UNPRINTABLE
    return text


_MAX_DEPTH: Final = 6


def _json_pieces(value: Any, depth: int) -> Iterator[str]:
    if value is None or value.__class__ in (bool, int, float):
        yield json.dumps(value)
    elif isinstance(value, str):
        yield json.dumps(value[:LABEL_TEXT_LIMIT], ensure_ascii=False)
    elif depth < _MAX_DEPTH and isinstance(value, Mapping):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield f'{", " if index else ""}{json.dumps(_text(key), ensure_ascii=False)}: '
            yield from _json_pieces(item, depth + 1)
        yield "}"
    elif depth < _MAX_DEPTH and isinstance(value, list | tuple | set | frozenset):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ", "
            yield from _json_pieces(item, depth + 1)
        yield "]"
    else:
        yield json.dumps(_text(value), ensure_ascii=False)
