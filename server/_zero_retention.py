"""Zero data retention: what the collector keeps of a span (or an SDK alert) when it must keep no text.

An allowlist by key, at any depth and in any shape a client sends (a list of text keys always misses the next
client's): numbers and booleans are kept; a string only under a key known to hold no free text, and only in the
form that kind of key holds. The key's last dotted segment, lower-cased, is what is matched.

- labels (``id``, ``name``, ``model``, ``provider``, ``version``, ``*_id``, ``*_name``, ...): one line of at most
  256 characters;
- enumerations (``status``, ``kind``, ``type``, ``role``, ``state``, ``reason``, ``event``, ``scope``, ``*_state``,
  ``*_reason``, ``*_code``, ...): one word of at most 64 characters (``stop``, ``HALF_OPEN``, ``budget_per_hour``);
  a sentence there is text, not a value of an enumeration, and so is a list (a graph's state, say);
- flags (``compliance_flags``, ``*_flags``): words, alone or in a list;
- times (``timestamp``, ``*_time``, ``*_at``, ...): digits and date and time separators only;
- counts and amounts (``*_tokens``, ``*_count``, ``*_usd``, ``*_ms``, ...): numbers only.

Keys that name text are not in the list, whatever a provider also sends under them: ``system`` (a system prompt in
Anthropic's request, a provider's name in older OpenTelemetry conventions, which the span's provider keeps) and
``code`` (a code interpreter's code, or a status code, which ``*_code`` keys keep).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from typing import Any

from agentwatch._agent_ids import agent_id_from_name

from ._model import SpanRecord

__all__ = ["strip_text", "strip_text_from"]

_LABEL = re.compile(r"[^\n\r]{0,256}").fullmatch
_WORD = re.compile(r"[A-Za-z0-9_.:/@+\-]{0,64}").fullmatch
_TIME = re.compile(r"[0-9TZ:.,+\-/ ]{0,40}").fullmatch
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:/\-]{1,128}").fullmatch

Keep = Callable[[str], object]


def _never(text: str) -> bool:
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class _Kind:
    """A kind of key: which strings may stay under it, alone and in a list."""

    keep: Keep
    keep_in_list: Keep
    keys: frozenset[str]
    suffixes: tuple[str, ...]


_KINDS = (
    _Kind(_LABEL, _LABEL, frozenset({"id", "name", "model", "provider", "version", "route", "dedup_key",
                                     "trace_state", "sampled"}),
          ("_id", "_ids", "_name", "_model", "_provider", "_version")),
    # One value each: a list under one of these is data (a graph's state, say), not an enumeration's value.
    _Kind(_WORD, _never, frozenset({"status", "kind", "type", "role", "event", "scope", "state", "reason", "method",
                                    "operation", "unit", "currency", "framework", "language", "scheme", "level",
                                    "severity_text"}),
          ("_type", "_kind", "_status", "_state", "_reason", "_code")),
    _Kind(_WORD, _WORD, frozenset({"flags"}), ("_flags",)),
    _Kind(_TIME, _never, frozenset({"timestamp", "time", "date", "month", "hour"}), ("_time", "_at")),
    _Kind(_never, _never, frozenset({"port"}), ("_ns", "_ms", "_count", "_tokens", "_usd")),
)
_TEXT = _Kind(_never, _never, frozenset(), ())


def _kind(key: str) -> _Kind:
    """The kind of ``key``. The exact keys of every kind are tried before the suffixes, so ``trace_state`` is a
    label although ``*_state`` are enumerations."""
    last = key.lower().rsplit(".", 1)[-1]
    for kind in _KINDS:
        if last in kind.keys:
            return kind
    for kind in _KINDS:
        if last.endswith(kind.suffixes):
            return kind
    return _TEXT


def _scrub(value: Any, keep: Keep, keep_in_list: Keep) -> tuple[Any, bool]:
    """``value`` without the strings zero data retention drops, and whether anything was dropped."""
    if isinstance(value, str):
        return (value, False) if keep(value) else (None, True)
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        dropped = False
        for key, item in value.items():
            # A key that is not an identifier is itself text ({"<the prompt>": 1}).
            if not isinstance(key, str) or not _PLAIN_KEY(key):
                dropped = True
                continue
            kind = _kind(key)
            clean, lost = _scrub(item, kind.keep, kind.keep_in_list)
            dropped |= lost
            # A key whose whole value was text goes too (its container left empty says nothing).
            if not lost or (clean is not None and clean != [] and clean != {}):
                kept[key] = clean
        return kept, dropped
    if isinstance(value, list):
        items = [_scrub(item, keep_in_list, keep_in_list) for item in value]
        return [clean for clean, _ in items if clean is not None], any(lost for _, lost in items)
    return value, False


def strip_text_from(payload: dict[str, Any]) -> dict[str, Any]:
    """Zero data retention for other payloads (SDK alerts): the same allowlist as for spans, and an agent scope's
    id that is text stored as the hash its spans' agent id is stored as (the breaker history stays one scope)."""
    kept, _ = _scrub(payload, _never, _never)
    scope_id = kept.get("scope_id")
    if kept.get("scope") == "agent" and isinstance(scope_id, str) and _id_reads_as_text(scope_id):
        kept["scope_id"] = _hashed_id(scope_id)
    return dict(kept)


def _alert_name(record: SpanRecord, attributes: dict[str, Any]) -> str:
    """An alert span's name with no free text: ``agentwatch.alert("<title>")`` names its span ``alert: <title>``,
    while the monitor's alerts are named after their reason (``alert.budget_per_hour``), an identifier."""
    if _WORD(record.name):
        return record.name
    reason = attributes.get("reason")  # scrubbed already: a word, or gone
    return f"alert.{reason}" if isinstance(reason, str) and reason else "alert"


_PREFIX = re.compile(r"([A-Za-z0-9_.\-]{1,64}):").match
_MAX_NAME_WORDS = 4
_MAX_NAME_CHARS = 256
#: Kinds whose spans clients name after free text: CrewAI names a task's span ``task:<its description>``.
_TEXT_NAMED_KINDS = frozenset({"task"})


#: A run this long of letters outside ASCII with no space in it is text: Chinese and Japanese write sentences
#: without spaces, which no word count sees.
_UNSPACED_TEXT = re.compile(r"[^\x00-\x7f\W\d_]{41,}").search
#: A role or an id may hold more words than a span's name ("Senior Data Research Analyst Lead") but reads as text
#: past six, or past four with a sentence's punctuation.
_MAX_LABEL_WORDS = 6
_SENTENCE_PUNCTUATION = re.compile(r"[.,;:!?](\s|$)").search


def _reads_as_text(name: str, max_words: int = _MAX_NAME_WORDS) -> bool:
    """A name that is text rather than a label: more than one line, more than 256 characters, more than four
    words (``max_words``), or a long run of letters without spaces in a script written so."""
    return (len(name) > _MAX_NAME_CHARS or len(name.split()) > max_words or not _LABEL(name)
            or _UNSPACED_TEXT(name) is not None)


def _label_reads_as_text(label: str) -> bool:
    """A role or an id that is text: a sentence rather than a title (the instructions CrewAI may call a role)."""
    return _reads_as_text(label, _MAX_LABEL_WORDS) or (
        len(label.split()) > _MAX_NAME_WORDS and _SENTENCE_PUNCTUATION(label) is not None)


def _id_reads_as_text(agent_id: str) -> bool:
    """An agent id that is text: ids are slugs, their words joined by - or _ ("you-must-never-tell-anyone")."""
    return _label_reads_as_text(re.sub(r"[-_]+", " ", agent_id))


def _hashed_id(agent_id: str) -> str:
    """A stand-in for an agent id that is text: the same for the same id, so the agent's rows stay one."""
    return "agent-" + hashlib.sha256(agent_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _span_name(record: SpanRecord) -> str:
    """A span's name with no free text. Names are kept where they name code or a role (a function, node, tool,
    model, agent: what the dashboard shows); a name that reads as text is replaced by the span's kind (its first
    word could be the text's). Text: more than one line, more than 256 characters or more
    than four words; and for a task (named after its description where the client captures text) anything but
    an identifier after the prefix (``task:research_task`` stays, ``task:Summarize the record`` is ``task``)."""
    name = record.name
    if record.kind in _TEXT_NAMED_KINDS:
        prefix = _PREFIX(name)
        rest = name[prefix.end():] if prefix else name
        if _WORD(rest):
            return name
    elif not _reads_as_text(name):
        return name
    return record.kind or "span"


#: Where clients put a span's events: an event's name is a label to the allowlist, but OTLP clients name events
#: after what happened, in words.
_EVENT_LISTS = ("otel.events", "events")


def _drop_text_event_names(attributes: dict[str, Any]) -> bool:
    """Name "event" the events whose names read as text; whether any did."""
    dropped = False
    for key in _EVENT_LISTS:
        events = attributes.get(key)
        for event in events if isinstance(events, list) else ():
            if isinstance(event, dict) and isinstance(event.get("name"), str) and _reads_as_text(event["name"]):
                event["name"] = "event"
                dropped = True
    return dropped


def _replaced(value: Any, stand_ins: dict[str, str | None]) -> Any:
    """``value`` with each string of ``stand_ins`` replaced by its stand-in, at any depth; one whose stand-in is
    None goes (a key whose value it was goes with it)."""
    if isinstance(value, dict):
        kept = {key: stand_ins.get(item, item) if isinstance(item, str) else _replaced(item, stand_ins)
                for key, item in value.items()}
        return {key: item for key, item in kept.items() if item is not None or value[key] is None}
    if isinstance(value, list):
        items = [stand_ins.get(item, item) if isinstance(item, str) else _replaced(item, stand_ins) for item in value]
        return [item for item, was in zip(items, value, strict=True) if item is not None or was is None]
    return value


def strip_text(record: SpanRecord) -> None:
    """Zero data retention for a span: no input or output, its attributes scrubbed by the allowlist, and no text in
    its name (an alert's title, a task's description, a sentence), its events' names, or its agent's name (an OTLP
    agent span with no agent attribute is named after its span) or role."""
    stripped = record.input is not None or record.output is not None
    record.input = None
    record.output = None
    attributes, lost = _scrub(record.attributes, _never, _never)
    lost |= _drop_text_event_names(attributes)
    name = _alert_name(record, attributes) if record.kind == "alert" else _span_name(record)
    lost |= name != record.name
    record.name = name
    # A role is a label ("Senior Researcher"), but clients send whatever their framework calls one: CrewAI's and
    # ATP's role may be a sentence of the agent's instructions. An agent's id is a label too, but a client may
    # send a sentence as one, and an OTLP agent span's id is derived from its name.
    # What is taken out of the span's fields as text, and what stands in for it: clients read those fields from
    # attributes the span keeps (gen_ai.agent.name, gen_ai.request.model, agent.name...), whose keys the allowlist
    # keeps as labels, and the SDK repeats an agent's id as the scope_id of its breaker and alert spans (which the
    # breaker history is made of): an id that is text becomes its hash there too, a name, role or model goes.
    stand_ins: dict[str, str | None] = {}
    hashed: dict[str, str] = {}
    if record.agent_name is not None and _reads_as_text(record.agent_name):
        if record.agent_id is not None and record.agent_id == agent_id_from_name(record.agent_name):
            hashed[record.agent_id] = _hashed_id(record.agent_id)
            record.agent_id = hashed[record.agent_id]
        stand_ins[record.agent_name] = None
        record.agent_name = None
    if record.agent_id is not None and _id_reads_as_text(record.agent_id):
        hashed[record.agent_id] = _hashed_id(record.agent_id)
        record.agent_id = hashed[record.agent_id]
    if record.agent_role is not None and _label_reads_as_text(record.agent_role):
        stand_ins[record.agent_role] = None
        record.agent_role = None
    for field in ("model", "provider"):
        value = getattr(record, field)
        if isinstance(value, str) and _reads_as_text(value):
            stand_ins[value] = None
            setattr(record, field, None)
    stand_ins.update(hashed)  # an id that is also a name keeps its stand-in: the agent's rows stay one
    if stand_ins:
        lost = True
        attributes = _replaced(attributes, stand_ins)
    attributes["agentwatch.zero_data_retention"] = True
    if stripped or lost:
        attributes["agentwatch.text_stripped"] = True
    record.attributes = attributes
