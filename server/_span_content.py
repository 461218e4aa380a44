"""Free-form span content (attributes, input, output: any JSON a client sends) that can be stored and read back.

Two things in such content break a span after validation: a lone UTF-16 surrogate (``"\\udc00"`` is valid JSON,
but no UTF-8 store can write it: the whole batch failed with a 500) and nesting deeper than the read API can
serialise (~250 levels: the span was stored, and its trace answered 500 on every read). Such a span is refused by
itself, as a span with an invalid field is.

Only the standard library's JSON parser lets either through (per-span validation, OTLP/JSON): the parser of the
other ingest paths (pydantic-core's) refuses lone surrogates and documents nested deeper than 200 levels, which
is why that is the limit here too.
"""

from __future__ import annotations

import re
from typing import Any

from ._model import SpanRecord

__all__ = ["MAX_NESTING", "content_problem", "free_form_problem"]

#: Levels of lists and objects in one of a span's attributes, input or output (``{}`` and ``[]`` are one level).
MAX_NESTING = 200
_SURROGATE = re.compile("[\ud800-\udfff]").search
_PATH_SHOWN = 6  # segments of a field's path named in an error; a path 200 levels deep says nothing more


class _Problem(Exception):
    def __init__(self, path: list[str], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _check(value: Any, levels_left: int, path: list[str]) -> None:
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE(value):
            raise _Problem(path, "text is not valid Unicode (it holds a lone UTF-16 surrogate)")
        return
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    if levels_left == 0:
        raise _Problem(path, f"nested more than {MAX_NESTING} levels deep")
    for key, item in items:
        if isinstance(key, str) and not key.isascii() and _SURROGATE(key):
            raise _Problem(path, "a key is not valid Unicode (it holds a lone UTF-16 surrogate)")
        path.append(str(key))
        _check(item, levels_left - 1, path)
        path.pop()


def free_form_problem(value: Any, field: str = "") -> tuple[str, str] | None:
    """``(path, message)`` for the first part of ``value`` (JSON a client sent, under ``field``) that could not be
    stored or read back; None if there is none. The path is named only as far as it is valid text."""
    path = [field] if field else []
    try:
        _check(value, MAX_NESTING, path)
    except _Problem as problem:
        shown = problem.path[:_PATH_SHOWN]
        return ".".join(shown) + ("..." if len(problem.path) > _PATH_SHOWN else ""), problem.message
    return None


def content_problem(record: SpanRecord) -> tuple[str, str] | None:
    """``free_form_problem`` of the span's attributes, input and output, the first found."""
    for field, value in (("attributes", record.attributes), ("input", record.input), ("output", record.output)):
        problem = free_form_problem(value, field)
        if problem is not None:
            return problem
    return None
