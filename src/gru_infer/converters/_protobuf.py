"""A strict reader of the protobuf wire format, for the few TensorFlow messages
gru_infer reads (tensor bundles, object graphs, Keras metadata).

Not a protobuf implementation: messages are described by small schemas (field
number -> name, kind, repeated) and decoded into dicts.  Every length is
checked against the bytes present, varints are at most 10 bytes, nesting is
bounded, groups and wire-type mismatches are refused.  Unknown fields are
skipped (after the same checks), as protobuf itself does.
"""

from __future__ import annotations

from ..errors import FormatError

VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
MAX_DEPTH = 32

# kind -> the wire type it must arrive with
_WIRE = {"int": VARINT, "uint": VARINT, "bool": VARINT, "enum": VARINT,
         "fixed32": FIXED32, "fixed64": FIXED64, "bytes": LEN, "string": LEN}


class ProtobufError(FormatError):
    """Bytes that are not a well-formed protobuf message of the expected kind."""


def read_varint(data, pos: int, end: int) -> tuple:
    """(value, next position) of the base-128 varint at data[pos:end]."""
    value = shift = 0
    for i in range(pos, min(end, pos + 10)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= 1 << 64:
                raise ProtobufError(f"varint at byte {pos} exceeds 64 bits")
            return value, i + 1
        shift += 7
    if end - pos >= 10:
        raise ProtobufError(f"varint at byte {pos} is longer than 10 bytes")
    raise ProtobufError(f"varint at byte {pos} runs past the end ({end - pos} bytes left)")


def iter_fields(data, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of each field in data[start:end]:
    value is an int for varint and fixed fields, a memoryview for
    length-delimited ones."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    end = len(view) if end is None else end
    pos = start
    while pos < end:
        tag, pos = read_varint(view, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number >= 1 << 29:
            raise ProtobufError(f"field number {number} is out of range")
        if wire == VARINT:
            value, pos = read_varint(view, pos, end)
        elif wire == FIXED64 or wire == FIXED32:
            width = 8 if wire == FIXED64 else 4
            if pos + width > end:
                raise ProtobufError(f"field {number}: fixed{width * 8} runs past the end")
            value = int.from_bytes(view[pos:pos + width], "little")
            pos += width
        elif wire == LEN:
            length, pos = read_varint(view, pos, end)
            if length > end - pos:
                raise ProtobufError(f"field {number}: length {length} exceeds the "
                                    f"{end - pos} bytes left")
            value = view[pos:pos + length]
            pos += length
        else:
            raise ProtobufError(f"field {number}: wire type {wire} (groups or invalid) is not "
                                "supported")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode(data, schema: dict, depth: int = 0) -> dict:
    """The message in data as a dict by field name.

    schema maps field number -> (name, kind, repeated); kind is one of
    int (int32/int64, two's complement), uint, bool, enum, fixed32, fixed64,
    bytes, string, or a nested schema dict for a message field.  Missing
    fields take proto3 defaults (0, False, b"", "", {} and [])."""
    if depth > MAX_DEPTH:
        raise ProtobufError(f"messages nested deeper than {MAX_DEPTH}")
    out = {}
    for name, kind, repeated in schema.values():
        out[name] = [] if repeated else _default(kind)
    for number, wire, value in iter_fields(data):
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind, repeated = spec
        if isinstance(kind, dict):
            if wire != LEN:
                raise ProtobufError(f"field {name!r}: expected a message, got wire type {wire}")
            value = decode(value, kind, depth + 1)
        else:
            if wire != _WIRE[kind]:
                if repeated and wire == LEN and _WIRE[kind] != LEN:  # packed repeated scalars
                    out[name].extend(_unpack(value, kind, name))
                    continue
                raise ProtobufError(f"field {name!r}: expected {kind}, got wire type {wire}")
            value = _scalar(value, kind, name)
        if repeated:
            out[name].append(value)
        else:
            out[name] = value
    return out


def _default(kind):
    if isinstance(kind, dict):
        return {}
    return {"bool": False, "bytes": b"", "string": ""}.get(kind, 0)


def _scalar(value, kind: str, name: str):
    if kind == "int":
        return _signed64(value)
    if kind == "bool":
        return bool(value)
    if kind == "bytes":
        return bytes(value)
    if kind == "string":
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtobufError(f"field {name!r}: not valid UTF-8 text") from None
    return value


def _unpack(view, kind: str, name: str) -> list:
    values, pos, end = [], 0, len(view)
    while pos < end:
        if kind in ("fixed32", "fixed64"):
            width = 4 if kind == "fixed32" else 8
            if pos + width > end:
                raise ProtobufError(f"field {name!r}: packed {kind} runs past the end")
            value, pos = int.from_bytes(view[pos:pos + width], "little"), pos + width
        else:
            value, pos = read_varint(view, pos, end)
        values.append(_scalar(value, kind, name))
    return values
