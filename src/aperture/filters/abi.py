"""The filter ABI, version 1: the batch bytes the host writes and the result it reads.

All integers are little-endian. Offsets are from the start of the batch. See
docs/filters.md for the table; this module is its only implementation.

    header (32 bytes)
      0  u32 magic          0x46545041 ("APTF")
      4  u16 abi_version    1
      6  u16 header_size    32
      8  u32 record_count
     12  u32 string_count
     16  u32 strings_offset  -> string_count x (u32 offset, u32 length) of UTF-8 bytes
     20  u32 records_offset  -> record_count x 32-byte records
     24  u32 arg_offset      -> the --filter-arg bytes (UTF-8, not NUL-terminated)
     28  u32 arg_length
    record (32 bytes)
      0  u32 event_type     1 cpu, 2 lock
      4  u32 pid
      8  u32 tid
     12  u32 comm           string index
     16  u64 value          cpu: samples; lock: wait ns
     24  u32 stack_offset   -> stack_length x (u32 name, u32 module) string indices, root first
     28  u32 stack_length
    result: record_count bytes at the returned pointer, 0 = drop, anything else = keep
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from aperture.model import EventType, Frame
from aperture.profile_types import PROFILE_TYPES

MAGIC = 0x46545041
ABI_VERSION = 1
HEADER = struct.Struct("<IHHIIIIII")
RECORD = struct.Struct("<IIIIQII")
EVENT_CODES = {t.event_type: t.filter_code for t in PROFILE_TYPES.values()}
U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class Record:
    """What a filter sees of one sample (CPU) or one lock record (LOCK)."""

    event_type: EventType
    pid: int
    tid: int
    comm: str
    value: int
    stack: tuple[Frame, ...]


def encode_batch(records: Sequence[Record], arg: bytes = b"") -> bytes:
    """The batch bytes for ``records`` (ABI version 1).

    Frames and whole stacks are interned by identity: a profile shares one tuple per
    distinct stack, so records with the same stack point at the same frame list.
    """
    index: dict[str, int] = {}
    strings: list[bytes] = []

    def intern(text: str) -> int:
        i = index.get(text)
        if i is None:
            i = index[text] = len(strings)
            strings.append(text.encode("utf-8", "surrogateescape"))
        return i

    frame_ids: dict[int, tuple[int, int]] = {}
    stack_at: dict[int, tuple[int, int]] = {}  # id(stack) -> (first u32, frame count)
    flat = array("I")
    comms: list[int] = []
    stacks: list[tuple[int, int]] = []
    for rec in records:
        comms.append(intern(rec.comm))
        where = stack_at.get(id(rec.stack))
        if where is None:
            start = len(flat)
            for frame in rec.stack:
                ids = frame_ids.get(id(frame))
                if ids is None:
                    ids = frame_ids[id(frame)] = (intern(frame.name), intern(frame.module))
                flat.extend(ids)
            where = stack_at[id(rec.stack)] = (start, len(rec.stack))
        stacks.append(where)

    strings_offset = HEADER.size
    data_offset = strings_offset + 8 * len(strings)
    entries = array("I")
    pos = data_offset
    for text in strings:
        entries.append(pos)
        entries.append(len(text))
        pos += len(text)
    blob = b"".join(strings)
    pad = -len(blob) % 8
    records_offset = data_offset + len(blob) + pad
    stacks_offset = records_offset + RECORD.size * len(records)
    body = bytearray(RECORD.size * len(records))
    pack = RECORD.pack_into
    for i, (rec, comm, (start, length)) in enumerate(zip(records, comms, stacks, strict=True)):
        value = rec.value if 0 <= rec.value <= U64_MAX else (0 if rec.value < 0 else U64_MAX)
        pack(body, i * RECORD.size, EVENT_CODES[rec.event_type], rec.pid & U32_MAX,
             rec.tid & U32_MAX, comm, value, stacks_offset + 4 * start, length)  # fmt: skip
    if sys.byteorder != "little":
        entries.byteswap()
        flat.byteswap()
    arg_offset = stacks_offset + 4 * len(flat)
    header = HEADER.pack(
        MAGIC,
        ABI_VERSION,
        HEADER.size,
        len(records),
        len(strings),
        strings_offset,
        records_offset,
        arg_offset,
        len(arg),
    )
    out = b"".join((header, entries.tobytes(), blob, b"\0" * pad, body, flat.tobytes(), arg))
    if len(out) > U32_MAX:
        raise ValueError("a filter batch must be under 4 GiB")
    return out


def decode_result(result: bytes, count: int) -> list[bool]:
    """The keep flags of ``count`` records."""
    if len(result) != count:
        raise ValueError(f"expected {count} result bytes, got {len(result)}")
    return [b != 0 for b in result]
