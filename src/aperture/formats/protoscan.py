"""How many times a protobuf message holds some of its fields, read off the wire unparsed.

Parsing builds one message per repeated element: a few bytes on the wire (an
empty pprof ``Sample`` is two) become a hundred in memory, so a small hostile
body can cost a thousand times its size. Walking the top-level tags costs
nothing but time, and stops as soon as a count passes its limit.
"""

from __future__ import annotations

from collections.abc import Iterator


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (IndexError past the end)."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    value, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + 1
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end of its payload) of each top-level field, until damage.

    The payload is a length-delimited field's content, empty for the other wire
    types; a truncated field or a group ends the walk (the parser that reads the
    message afterwards says what is wrong).
    """
    pos, end = 0, len(data)
    try:
        while pos < end:
            tag, pos = _varint(data, pos)
            wire_type = tag & 7
            if wire_type == 2:  # length-delimited: messages, strings, packed scalars
                length, pos = _varint(data, pos)
                if pos + length > end:
                    return
                yield tag >> 3, pos, pos + length
                pos += length
                continue
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                return
            yield tag >> 3, pos, pos
    except IndexError:
        return


def count_fields(data: bytes, limits: dict[int, int]) -> dict[int, int]:
    """Occurrences of each field number in ``limits`` among ``data``'s top-level fields.

    Stops at the first count past its limit (that count is then ``limit + 1``).
    """
    counts = dict.fromkeys(limits, 0)
    for field, _, _ in _fields(data):
        count = counts.get(field)
        if count is not None:
            counts[field] = count = count + 1
            if count > limits[field]:
                break
    return counts


def payloads(data: bytes, number: int, limit: int) -> list[bytes] | None:
    """The contents of top-level field ``number`` (a message or string), None past ``limit``."""
    out: list[bytes] = []
    for field, start, end in _fields(data):
        if field == number:
            if len(out) == limit:
                return None
            out.append(data[start:end])
    return out
