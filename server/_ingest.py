"""Turning an ingest request body into span records: size caps, bounded gzip inflation, validation."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zlib
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from ._model import (
    NATIVE_LIST,
    SPAN_LIST,
    SPAN_ONE,
    SpanRecord,
    looks_atp,
    row_records,
    rows_as_records,
    sdk_records,
    to_record,
)
from ._span_content import MAX_NESTING, content_problem

__all__ = ["IngestError", "ParsedBatch", "inflate", "check_shape", "parse_spans", "parse_rows", "without_bom"]

_MAX_REPORTED_ERRORS = 20


class IngestError(Exception):
    """A request that is refused as a whole; nothing of it is stored."""

    def __init__(self, status_code: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.details = details or []


@dataclasses.dataclass(slots=True)
class ParsedBatch:
    records: list[SpanRecord]
    errors: list[dict[str, Any]]
    rejected: int


def _has_zlib_header(body: bytes | bytearray) -> bool:
    # HTTP "deflate" means zlib-wrapped, but some clients send raw deflate; the header check tells them apart.
    return len(body) >= 2 and body[0] & 0x0F == 8 and ((body[0] << 8) | body[1]) % 31 == 0


_INFLATE_CHUNK = 256 * 1024
# Input is handed to zlib in slices that start small and double while a member lasts: zlib copies the input it
# did not use (``unused_data``, ``unconsumed_tail``) at every member's end, so handing it the whole rest of the
# body made a body of many tiny members cost time quadratic in its size.
_FIRST_INPUT_SLICE = 512
_MAX_INPUT_SLICE = 256 * 1024
# A client writes a batch as one member, or a few appended ones; each member costs a decompressor.
MAX_GZIP_MEMBERS = 10_000


def inflate(body: bytes | bytearray, encoding: str | None, cap: int) -> bytes | bytearray:
    """Undo ``Content-Encoding`` without ever holding more than ``cap`` inflated bytes (gzip bombs).

    Inflated a chunk at a time into one buffer, which is returned as it is: one copy of the document, never two.
    Time is linear in the body's size, however many gzip members it is made of.
    """
    coding = (encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        # Some clients compress without saying so; the gzip magic number is unambiguous in JSON.
        if not body.startswith(b"\x1f\x8b"):
            return body
        coding = "gzip"
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise IngestError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    wbits = 31 if coding != "deflate" else (15 if _has_zlib_header(body) else -15)
    out = bytearray()
    view = memoryview(body)
    position = members = 0
    try:
        while position < len(view):
            members += 1
            if members > MAX_GZIP_MEMBERS:
                raise IngestError(413, f"body has more than {MAX_GZIP_MEMBERS} compressed members; send one")
            position = _inflate_member(zlib.decompressobj(wbits), view, position, out, cap)
            # Concatenated gzip members are legal; anything else after the stream is garbage.
            if view[position:position + 2] != b"\x1f\x8b":
                break
    except zlib.error as error:
        raise IngestError(400, f"body is not valid {coding}: {error}") from None
    finally:
        view.release()
    return out


def _inflate_member(decompressor: zlib._Decompress, view: memoryview, position: int, out: bytearray,
                    cap: int) -> int:
    """Inflate into ``out`` the one compressed stream that starts at ``position`` of ``view``; the position just
    past its end is returned.

    The loop ends at the stream's end (``eof``), not when the input looks used up: once a stream has ended,
    CPython leaves the input that came after it in ``unconsumed_tail`` as well as in ``unused_data``, and
    ``decompress`` then returns nothing for ever."""
    step = _FIRST_INPUT_SLICE
    while not decompressor.eof:
        # The input not taken because of the output limit comes first; the body's next slice only when it is used.
        pending = decompressor.unconsumed_tail
        if pending:
            data: bytes | memoryview = pending
        elif position < len(view):
            data = view[position:position + step]
            position += len(data)
            step = min(step * 2, _MAX_INPUT_SLICE)
        else:
            break
        chunk = decompressor.decompress(data, _INFLATE_CHUNK)
        out += chunk
        if len(out) > cap:
            raise IngestError(413, f"body inflates to more than {cap} bytes; send smaller batches")
        if not chunk and not decompressor.eof and len(decompressor.unconsumed_tail) == len(data):
            # zlib took nothing and gave nothing: it never will
            raise IngestError(400, "compressed body makes no progress")
    if not decompressor.eof:
        out += decompressor.flush()
        if not decompressor.eof:
            raise IngestError(400, "truncated compressed body")
        if len(out) > cap:
            raise IngestError(413, f"body inflates to more than {cap} bytes; send smaller batches")
    # Every byte handed to zlib lies just before ``position``; the ones after the stream's end were not its own.
    return position - len(decompressor.unused_data)


def _upper_bound_of_values(raw: bytes | bytearray) -> int:
    """At least the number of JSON values in ``raw``, counted at C speed: every value but the root follows a
    ``[``, a ``,`` or (in an object) a ``:`` whose key follows a ``{`` or a ``,``. Commas inside strings make it
    an over-estimate, which only sends the body to the exact count."""
    return raw.count(b",") + raw.count(b"[") + raw.count(b"{") + 1


def check_shape(raw: bytes | bytearray, max_spans: int, max_values: int) -> None:
    """Refuse, before any Python object is built for it, a document with more than ``max_values`` JSON values
    or more than ``max_spans`` spans: a 3-byte ``{}`` becomes a 64-byte dict, so a few MB of them cost GBs.

    The exact count streams the document (ijson) and stops at the first value over the limit; it runs only when
    the cheap upper bound says the limit may be passed."""
    # Every container takes its two brackets, every scalar at least a byte, and every value but the root and the
    # first of each container follows a comma: n values take at least 2n - 1 bytes. So a body of up to
    # 2 * max_values - 1 bytes (a batch of thousands of spans) is within the limit without reading it.
    if (len(raw) + 1) // 2 <= max_values or _upper_bound_of_values(raw) <= max_values:
        return
    import ijson  # only for the rare body that needs an exact count

    values = depth = items = 0
    in_list = False
    try:
        for event, _ in ijson.basic_parse(io.BytesIO(raw), use_float=True):
            if event == "map_key":
                continue
            if event in ("end_map", "end_array"):
                depth -= 1
                continue
            if depth == 1 and in_list:
                items += 1
                if items > max_spans:
                    raise IngestError(413, f"at most {max_spans} spans per request")
            values += 1
            if values > max_values:
                raise IngestError(413, f"more than {max_values} JSON values in one request; send smaller batches")
            if event in ("start_map", "start_array"):
                if depth == 0:
                    in_list = event == "start_array"  # a list of spans; an object is one span
                depth += 1
    except ijson.JSONError as error:
        raise IngestError(400, f"body is not valid JSON: {error}") from None


def _location(loc: tuple[Any, ...]) -> str:
    # pydantic prefixes the union tag ("native"/"atp"); the client cares about the field path only.
    parts = [str(part) for part in loc if part not in ("native", "atp") and "[" not in str(part)]
    return ".".join(parts)


def _error(index: int | None, message: str, loc: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {"message": message}
    if index is not None:
        item["index"] = index
    if loc:
        item["field"] = loc
    return item


_FIRST_TOKEN = re.compile(rb"\s*(.?)")
_UTF8_BOM = b"\xef\xbb\xbf"


def without_bom(raw: bytes | bytearray) -> bytes | bytearray:
    """``raw`` without a leading UTF-8 byte order mark, which Windows tools (PowerShell, .NET's UTF8 encoding)
    write before JSON; RFC 8259 lets a parser ignore it. A bytearray (every request body) loses it in place."""
    if not raw.startswith(_UTF8_BOM):
        return raw
    if isinstance(raw, bytearray):
        del raw[:len(_UTF8_BOM)]
        return raw
    return raw[len(_UTF8_BOM):]


def parse_spans(raw: bytes | bytearray, max_spans: int) -> ParsedBatch:
    """Validate one span or a list of spans. Valid spans are kept even if their neighbours are not."""
    match = _FIRST_TOKEN.match(raw)
    head = bytes(match.group(1)) if match else b""
    if head not in (b"[", b"{"):
        raise IngestError(400, "body must be a JSON object (one span) or a JSON array of spans")
    fast = _parse_sdk_batch(raw, max_spans)
    if fast is not None:
        return ParsedBatch(fast, [], 0)
    try:
        validated: list[Any] = []
        if head == b"[":
            try:
                validated = NATIVE_LIST.validate_json(raw)
                mixed = any(looks_atp(span) for span in validated)
            except ValidationError:
                mixed = True
            if mixed:
                validated = SPAN_LIST.validate_json(raw)
        else:
            validated = [SPAN_ONE.validate_json(raw)]
    except ValidationError:
        batch = _parse_slowly(raw, max_spans)
        if head == b"{" and not batch.records:
            hint = _wrapped_spans_hint(raw)
            if hint is not None:
                raise IngestError(422, hint, batch.errors) from None
        return batch
    if len(validated) > max_spans:
        raise IngestError(413, f"at most {max_spans} spans per request")
    records: list[SpanRecord] = []
    errors: list[dict[str, Any]] = []
    for index, span in enumerate(validated):
        try:
            records.append(to_record(span))
        except ValueError as error:
            errors.append(_error(index, str(error)))
    return ParsedBatch(records, errors[:_MAX_REPORTED_ERRORS], len(errors))


def parse_rows(raw: bytes | bytearray, max_spans: int) -> ParsedBatch:
    """Validate a body of span rows (``ROWS_MEDIA_TYPE``, what the SDK sends a collector that announced it takes them):
    stored as the same spans sent as records would be. A body that is no list of rows is refused as a whole; rows
    whose values are not valid are reported by index, as records are, and the valid ones kept."""
    try:
        document = from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        raise IngestError(400, f"body is not valid JSON: {error}") from None
    if document.__class__ is not list:
        raise IngestError(400, "a body of span rows must be a JSON array of rows")
    if len(document) > max_spans:
        raise IngestError(413, f"at most {max_spans} spans per request")
    records = row_records(document)
    if records is not None:
        return ParsedBatch(records, [], 0)
    as_records = rows_as_records(document)
    if as_records is None:
        raise IngestError(400, "a span row is an array of 21 values: the span's 19 fields, then its attributes' keys "
                               "and their values as two arrays of the same length")
    # Validated and explained one by one, as records (the same order, so the same indexes).
    return parse_spans(json.dumps(as_records).encode(), max_spans)


#: Keys under which clients wrap a list of spans in an object (``{"spans": [...]}``), which this route does not take.
_WRAPPER_KEYS = ("spans", "data", "batch", "items", "records")


def _wrapped_spans_hint(raw: bytes | bytearray) -> str | None:
    """What to send instead, for an object that is no span but holds spans: an OTLP/JSON export (``resourceSpans``)
    belongs to ``/v1/traces``; a list of spans wrapped in an object is sent as the list itself. Before, both were
    told only "trace_id: Field required", which named no way out."""
    try:
        document = from_json(raw)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    if "resourceSpans" in document or "resource_spans" in document:
        return "this body is an OTLP/JSON export (resourceSpans): POST it to /v1/traces"
    for key in _WRAPPER_KEYS:
        if isinstance(document.get(key), list):
            return (f'a body {{"{key}": [...]}} is not a span: send the list of spans itself as the body (a JSON '
                    "array), or one span as an object")
    return None


def _parse_sdk_batch(raw: bytes | bytearray, max_spans: int) -> list[SpanRecord] | None:
    """The records of a body in which every span is in the SDK's shape and valid, checked without pydantic;
    None for any other body, which pydantic then validates (and explains) as before."""
    try:
        # The JSON parser pydantic itself uses, so values come out as validate_json would make them; with
        # NaN and Infinity refused, which pydantic accepts in attributes: such a body takes the pydantic path.
        document = from_json(raw, allow_inf_nan=False)
    except ValueError:
        return None
    items = document if isinstance(document, list) else [document]
    if len(items) > max_spans:
        raise IngestError(413, f"at most {max_spans} spans per request")
    return sdk_records(items) if items else None


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)
    return match.end() if match else position


_NESTING_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_DECODER = json.JSONDecoder()
_TOO_DEEP = object()  # in place of a span nested too deeply for the parser


def _end_of_value(text: str, start: int) -> int:
    """Where the JSON container at ``text[start]`` ends, found without building it (it is too deep to build)."""
    depth = 0
    for match in _NESTING_TOKEN.finditer(text, start):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth == 0:
                return match.end()
    raise ValueError(f"unterminated value starting at char {start}")


def _load_items(raw: bytes | bytearray, max_spans: int) -> tuple[list[Any], bool]:
    """The spans of a body (one object or a list), each parsed by itself, and whether the body was one object.

    A span nested deeper than the parser can go (about 1,000 levels: it recurses) is ``_TOO_DEEP`` rather than
    the end of the whole batch (json.loads of the whole body raised RecursionError, and every neighbour was lost
    with it)."""
    text = bytes(raw).decode(json.detect_encoding(raw), "surrogatepass")
    position = _skip_space(text, 0)
    items: list[Any] = []
    single = not text.startswith("[", position)
    if not single:
        position = _skip_space(text, position + 1)
    if single or not text.startswith("]", position):
        while True:
            try:
                item, position = _DECODER.raw_decode(text, position)
            except RecursionError:
                item, position = _TOO_DEEP, _end_of_value(text, position)
            items.append(item)
            if len(items) > max_spans:
                raise IngestError(413, f"at most {max_spans} spans per request")
            position = _skip_space(text, position)
            if single or not text.startswith(",", position):
                break
            position = _skip_space(text, position + 1)
    if not single:
        if not text.startswith("]", position):
            raise ValueError(f"Expecting ',' delimiter or ']': char {position}")
        position = _skip_space(text, position + 1)
    if position != len(text):
        raise ValueError(f"Extra data: char {position}")
    return items, single


def _parse_slowly(raw: bytes | bytearray, max_spans: int) -> ParsedBatch:
    """Per-span validation, to keep the good spans of a batch and say exactly what is wrong with the rest."""
    invalid: str | None = None
    try:
        items, single = _load_items(raw, max_spans)
    except ValueError as error:
        invalid = str(error)  # refused below, outside this block: the error's frames hold the document
    if invalid is not None:
        raise IngestError(400, f"body is not valid JSON: {invalid}")
    records: list[SpanRecord] = []
    errors: list[dict[str, Any]] = []
    rejected = 0
    for index, item in enumerate(items):
        if item is _TOO_DEEP:
            rejected += 1
            errors.append(_error(None if single else index, f"nested more than {MAX_NESTING} levels deep"))
            continue
        try:
            record = to_record(SPAN_ONE.validate_python(item))
        except ValidationError as error:
            rejected += 1
            for detail in error.errors(include_url=False, include_input=False)[:3]:
                errors.append(_error(None if single else index, detail["msg"], _location(detail["loc"])))
            continue
        except ValueError as error:
            rejected += 1
            errors.append(_error(None if single else index, str(error)))
            continue
        # The only ingest path on which lone surrogates and very deep values get this far (_span_content).
        problem = content_problem(record)
        if problem is None:
            records.append(record)
        else:
            rejected += 1
            errors.append(_error(None if single else index, problem[1], problem[0]))
    return ParsedBatch(records, errors[:_MAX_REPORTED_ERRORS], rejected)
