"""How many values an OTLP/protobuf trace request holds, read from its wire format before it is parsed.

The protobuf parser materialises every message of a request at once, at about 13 times the bytes it takes on the
wire (22 MB of empty ``AnyValue`` became ~300 MB), and the decoded spans then cost a Python object per value. So
the request's fields are counted first, the way ``check_shape`` counts an ingest body's JSON values: every field
of every message the request schema defines (a span, a key, an ``AnyValue``, a string, a number) is one value.
"""

from __future__ import annotations

from functools import cache

__all__ = ["WireError", "fields_within", "length_delimited"]

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
# The parser refuses messages nested deeper than 100 (counted from the message it parses: the request, or one span
# when a request's spans are parsed one at a time, three levels down); what is deeper is never materialised, so
# it is not counted.
_MAX_DEPTH = 128

Schemas = dict[str, dict[int, str]]


class WireError(ValueError):
    """The bytes are not a protobuf message."""


@cache
def _request_schemas() -> tuple[str, Schemas]:
    """For ``ExportTraceServiceRequest`` and every message type under it: which field numbers hold messages, and of
    which type (read from the generated descriptors, so fields added to OTLP later are followed too)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    root = ExportTraceServiceRequest.DESCRIPTOR
    schemas: Schemas = {}
    pending = [root]
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in schemas:
            continue
        nested = [field for field in descriptor.fields if field.message_type is not None]
        schemas[descriptor.full_name] = {field.number: field.message_type.full_name for field in nested}
        pending.extend(field.message_type for field in nested)
    return root.full_name, schemas


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise WireError("truncated or overlong varint")


class _Counter:
    __slots__ = ("data", "schemas", "left")

    def __init__(self, data: bytes, schemas: Schemas, limit: int) -> None:
        self.data = data
        self.schemas = schemas
        self.left = limit

    def message(self, pos: int, end: int, nested: dict[int, str], depth: int) -> bool:
        """Count the fields of the message in ``data[pos:end]``; False as soon as the limit is passed."""
        if depth > _MAX_DEPTH:
            return True  # a span this deep is refused by the parser; its neighbours are counted
        data = self.data
        while pos < end:
            key, start, pos = _field(data, pos, end)
            self.left -= 1
            if self.left < 0:
                return False
            if start >= 0:
                kind = nested.get(key >> 3)
                if kind is not None and pos <= end \
                        and not self.message(start, pos, self.schemas[kind], depth + 1):
                    return False
        if pos != end:
            raise WireError("a field runs past the end of its message")
        return True


def _field(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The field at ``pos``: its key, where its bytes start if it is length-delimited (else -1), and where it ends."""
    key, pos = _varint(data, pos, end)
    wire_type = key & 7
    if wire_type == _LENGTH:
        size, pos = _varint(data, pos, end)
        return key, pos, pos + size
    if wire_type == _VARINT:
        return key, -1, _varint(data, pos, end)[1]
    if wire_type == _FIXED64:
        return key, -1, pos + 8
    if wire_type == _FIXED32:
        return key, -1, pos + 4
    raise WireError(f"wire type {wire_type} is not used by OTLP")


def fields_within(body: bytes, limit: int) -> bool:
    """Whether the OTLP trace request ``body`` has at most ``limit`` fields; raises WireError if it is not
    protobuf. Reads nothing of a body too short to hold more: every field takes at least two bytes."""
    if len(body) // 2 <= limit:
        return True
    root, schemas = _request_schemas()
    return _Counter(body, schemas, limit).message(0, len(body), schemas[root], 0)


def length_delimited(data: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """``(field number, start, end)`` of each length-delimited field of the message in ``data[pos:end]`` (the
    others are skipped); raises WireError if those bytes are not a protobuf message."""
    fields: list[tuple[int, int, int]] = []
    while pos < end:
        key, start, pos = _field(data, pos, end)
        if start >= 0:
            fields.append((key >> 3, start, pos))
    if pos != end:
        raise WireError("a field runs past the end of its message")
    return fields
