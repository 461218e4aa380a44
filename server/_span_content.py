"""Free-form span content (attributes, input, output: any JSON a client sends) that can be stored and read back.

Nesting deeper than the read API can serialise (~250 levels) passes validation: the span was stored, and its
trace answered 500 on every read. Such a span is refused by itself, as a span with an invalid field is.

Only the standard library's JSON parser lets it through (per-span validation, OTLP/JSON): the parser of the other
ingest paths (pydantic-core's) refuses documents nested deeper than 200 levels, which is why that is the limit
here too.
"""

from __future__ import annotations

from typing import Any

from ._model import SpanRecord

__all__ = ["MAX_NESTING", "content_problem"]

#: Levels of lists and objects in one of a span's attributes, input or output (``{}`` and ``[]`` are one level).
MAX_NESTING = 200
_PATH_SHOWN = 6  # segments of a field's path named in an error; a path 200 levels deep says nothing more


class _Problem(Exception):
    def __init__(self, path: list[str], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _check(value: Any, levels_left: int, path: list[str]) -> None:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    if levels_left == 0:
        raise _Problem(path, f"nested more than {MAX_NESTING} levels deep")
    for key, item in items:
        path.append(str(key))
        _check(item, levels_left - 1, path)
        path.pop()


def content_problem(record: SpanRecord) -> tuple[str, str] | None:
    """``(field, message)`` for the first value of the span's attributes, input or output that could not be stored
    or read back; None if there is none."""
    for field, value in (("attributes", record.attributes), ("input", record.input), ("output", record.output)):
        path = [field]
        try:
            _check(value, MAX_NESTING, path)
        except _Problem as problem:
            shown = problem.path[:_PATH_SHOWN]
            return ".".join(shown) + ("..." if len(problem.path) > _PATH_SHOWN else ""), problem.message
    return None
