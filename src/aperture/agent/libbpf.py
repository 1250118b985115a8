"""A thin ctypes binding of the system libbpf (Debian ``libbpf1``).

Only what the collectors use is bound. libbpf 1.x returns NULL and sets errno
on failure for pointer-returning calls and a negative errno for int-returning
ones; both become :class:`BpfError` with libbpf's own message.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import re
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_void_p,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aperture.errors import UserError

# Any ctypes value type (Structure, c_uint32, ...): the stubs give no common bound.
_CT = TypeVar("_CT")

# libbpf_print_level
_LIBBPF_WARN = 0
_LIBBPF_DEBUG = 2

_PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
# a ring buffer record's header: its length (and flags) and a page offset
_RECORD_HEADER = struct.Struct("<II")


# The most value bytes one drain batch reads.
DRAIN_BATCH_BYTES = 1 << 20


class BpfError(UserError):
    """A libbpf call failed; ``errno`` holds the positive error number."""

    def __init__(self, what: str, err: int, detail: str = "") -> None:
        self.errno = abs(err)
        text = f"{what}: {strerror(self.errno)}"
        if detail:
            text += f"\n{detail}"
        super().__init__(text)


class _BpfMapBatchOpts(ctypes.Structure):
    _fields_ = (("sz", c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64))


class _BpfMapCreateOpts(ctypes.Structure):
    """``struct bpf_map_create_opts`` of libbpf 1.x (sz tells libbpf which fields we know)."""

    _fields_ = (
        ("sz", c_size_t),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("inner_map_fd", c_uint32),
        ("map_flags", c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", c_uint32),
        ("map_ifindex", c_uint32),
    )


BPF_MAP_TYPE_ARRAY = 2
BPF_F_INNER_MAP = 1 << 12
BPF_F_MMAPABLE = 1 << 10


def create_map(
    map_type: int, name: str, key_size: int, value_size: int, max_entries: int, flags: int = 0
) -> int:
    """A new map outside any object (an inner map of a map-of-maps); returns its fd."""
    opts = _BpfMapCreateOpts(sz=ctypes.sizeof(_BpfMapCreateOpts), map_flags=flags)
    fd = lib().bpf_map_create(
        map_type, name.encode()[:15], key_size, value_size, max_entries, ctypes.byref(opts)
    )
    return _check(fd, f"creating map {name} ({max_entries} entries of {value_size} bytes)")


def update_batch(fd: int, keys: int, values: int, count: int) -> None:
    """Write ``count`` entries from the buffers at addresses ``keys`` and ``values``."""
    opts = _BpfMapBatchOpts(sz=ctypes.sizeof(_BpfMapBatchOpts))
    n = c_uint32(count)
    _check(
        lib().bpf_map_update_batch(
            fd, c_void_p(keys), c_void_p(values), ctypes.byref(n), ctypes.byref(opts)
        ),
        "writing a map in batch",
    )


_lib: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None
_lock = threading.Lock()
# libbpf messages at WARN level (the verifier log among them), newest last.
_messages: list[str] = []
_print_cb: Any = None  # keeps the C callback alive


def _library_names() -> Iterator[str]:
    yield "libbpf.so.1"
    found = ctypes.util.find_library("bpf")
    if found:
        yield found


def _find_library() -> str:
    # find_library runs `ldconfig -p`: only when the usual soname is not there
    for name in _library_names():
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    raise UserError(
        "libbpf is not installed (libbpf.so.1 not found): install it with "
        "`apt-get install libbpf1` and run the agent again."
    )


def _declare(lib: ctypes.CDLL) -> None:
    p = c_void_p
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "libbpf_set_print": (p, [p]),
        "libbpf_strerror": (c_int, [c_int, c_char_p, c_size_t]),
        "bpf_object__open_file": (p, [c_char_p, p]),
        "bpf_object__load": (c_int, [p]),
        "bpf_object__close": (None, [p]),
        "bpf_object__find_map_by_name": (p, [p, c_char_p]),
        "bpf_object__find_program_by_name": (p, [p, c_char_p]),
        "bpf_object__next_program": (p, [p, p]),
        "bpf_program__name": (c_char_p, [p]),
        "bpf_map__fd": (c_int, [p]),
        "bpf_map__set_max_entries": (c_int, [p, c_uint32]),
        "bpf_map__max_entries": (c_uint32, [p]),
        "bpf_map__key_size": (c_uint32, [p]),
        "bpf_map__value_size": (c_uint32, [p]),
        "bpf_map__initial_value": (p, [p, POINTER(c_size_t)]),
        "bpf_map__set_initial_value": (c_int, [p, p, c_size_t]),
        "bpf_program__attach": (p, [p]),
        "bpf_program__attach_perf_event": (p, [p, c_int]),
        "bpf_program__set_autoload": (c_int, [p, ctypes.c_bool]),
        "bpf_program__set_log_buf": (c_int, [p, c_char_p, c_size_t]),
        "bpf_program__set_log_level": (c_int, [p, c_uint32]),
        "bpf_program__fd": (c_int, [p]),
        "bpf_link__destroy": (c_int, [p]),
        "bpf_map_lookup_elem": (c_int, [c_int, p, p]),
        "bpf_map_update_elem": (c_int, [c_int, p, p, ctypes.c_uint64]),
        "bpf_map_delete_elem": (c_int, [c_int, p]),
        "bpf_map_get_next_key": (c_int, [c_int, p, p]),
        "bpf_map_lookup_batch": (c_int, [c_int, p, p, p, p, POINTER(c_uint32), p]),
        "bpf_map_lookup_and_delete_batch": (c_int, [c_int, p, p, p, p, POINTER(c_uint32), p]),
        "bpf_map_delete_batch": (c_int, [c_int, p, POINTER(c_uint32), p]),
        "bpf_map_update_batch": (c_int, [c_int, p, p, POINTER(c_uint32), p]),
        "bpf_map_create": (c_int, [c_int, c_char_p, c_uint32, c_uint32, c_uint32, p]),
        "libbpf_num_possible_cpus": (c_int, []),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        # Pointer results must be c_void_p: the int default truncates them.
        fn.restype = restype
        fn.argtypes = argtypes


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    if level > _LIBBPF_WARN or fmt is None or _libc is None:
        return 0
    # The verifier log comes as one message, and its end says what failed.
    buf = ctypes.create_string_buffer(1 << 20)
    _libc.vsnprintf(buf, len(buf), fmt, c_void_p(args))
    text = buf.value.decode(errors="replace").rstrip()
    if len(text) > 16384:
        text = "...\n" + text[-16384:]
    with _lock:
        _messages.append(text)
        del _messages[:-400]
    return 0


def lib() -> ctypes.CDLL:
    """The loaded libbpf, declared and with its log captured (loaded once)."""
    global _lib, _libc, _print_cb
    if _lib is None:
        loaded = ctypes.CDLL(_find_library(), use_errno=True)
        _declare(loaded)
        _libc = ctypes.CDLL(None, use_errno=True)  # the C library is already in the process
        _libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        _libc.vsnprintf.restype = c_int
        _print_cb = _PRINT_FN(_on_print)
        loaded.libbpf_set_print(ctypes.cast(_print_cb, c_void_p))
        _lib = loaded
    return _lib


def strerror(err: int) -> str:
    """libbpf's text for a positive or negative error number."""
    buf = ctypes.create_string_buffer(256)
    if _lib is not None and _lib.libbpf_strerror(-abs(err), buf, len(buf)) == 0:
        return buf.value.decode(errors="replace")
    return os.strerror(abs(err))


def take_messages() -> list[str]:
    """libbpf's warnings since the last call (verifier log included)."""
    with _lock:
        out = list(_messages)
        _messages.clear()
    return out


def _check(result: int, what: str) -> int:
    if result < 0:
        raise BpfError(what, result)
    return result


def _check_ptr(ptr: int | None, what: str) -> int:
    if not ptr:
        raise BpfError(what, ctypes.get_errno() or errno.EINVAL)
    return ptr


def num_possible_cpus() -> int:
    return _check(lib().libbpf_num_possible_cpus(), "counting possible CPUs")


class BpfMap:
    """One map of a loaded object, with typed element access."""

    def __init__(self, ptr: int, name: str) -> None:
        self._ptr = ptr
        self.name = name
        self._log: ctypes.Array[ctypes.c_char] | None = None

    @property
    def fd(self) -> int:
        return int(lib().bpf_map__fd(self._ptr))

    @property
    def key_size(self) -> int:
        return int(lib().bpf_map__key_size(self._ptr))

    @property
    def value_size(self) -> int:
        return int(lib().bpf_map__value_size(self._ptr))

    @property
    def max_entries(self) -> int:
        return int(lib().bpf_map__max_entries(self._ptr))

    def set_max_entries(self, n: int) -> None:
        _check(lib().bpf_map__set_max_entries(self._ptr, n), f"sizing map {self.name}")

    def initial_value(self) -> ctypes.Array[ctypes.c_char]:
        """The writable initial data of a .rodata/.data map (before load)."""
        size = c_size_t()
        ptr = _check_ptr(
            lib().bpf_map__initial_value(self._ptr, ctypes.byref(size)),
            f"reading initial value of {self.name}",
        )
        return (ctypes.c_char * size.value).from_address(ptr)

    def lookup(self, key: ctypes._CData, value: ctypes._CData) -> bool:
        """Fill ``value`` for ``key``; False when the key is absent."""
        rc = lib().bpf_map_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(value))
        if rc == -errno.ENOENT:
            return False
        _check(rc, f"looking up {self.name}")
        return True

    def update(self, key: ctypes._CData, value: ctypes._CData, flags: int = 0) -> None:
        rc = lib().bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(value), flags)
        _check(rc, f"updating {self.name}")

    def delete(self, key: ctypes._CData) -> bool:
        rc = lib().bpf_map_delete_elem(self.fd, ctypes.byref(key))
        if rc == -errno.ENOENT:
            return False
        _check(rc, f"deleting from {self.name}")
        return True

    def keys(self, key_type: type[_CT]) -> Iterator[_CT]:
        """Iterate keys with get_next_key (for maps without batch support)."""
        prev: _CT | None = None
        while True:
            nxt = key_type()
            rc = lib().bpf_map_get_next_key(
                self.fd,
                None if prev is None else ctypes.byref(prev),  # type: ignore[arg-type]
                ctypes.byref(nxt),  # type: ignore[arg-type]
            )
            if rc == -errno.ENOENT:
                return
            _check(rc, f"iterating {self.name}")
            yield nxt
            prev = nxt

    def drain(self, key_type: type[_CT], value_type: type[Any]) -> list[tuple[_CT, Any]]:
        """Read and delete every entry of a hash map in batches.

        Only for a map no program writes to at the time (the idle buffer).
        """
        out: list[tuple[_CT, Any]] = []
        # Batches of at most ~1 MiB of values: a 2 KiB stack row in batches of 4,096
        # took 8 MiB each drain, however few rows the map held.
        chunk = max(1, min(self.max_entries, 4096, DRAIN_BATCH_BYTES // ctypes.sizeof(value_type)))
        token = c_uint32()
        opts = _BpfMapBatchOpts(sz=ctypes.sizeof(_BpfMapBatchOpts))
        first = True
        while True:
            # Fresh arrays per batch: the rows handed out are views into them,
            # so reusing one buffer would overwrite earlier rows.
            keys = (key_type * chunk)()  # type: ignore[operator]
            values = (value_type * chunk)()
            count = c_uint32(chunk)
            rc = lib().bpf_map_lookup_and_delete_batch(
                self.fd,
                None if first else ctypes.byref(token),
                ctypes.byref(token),
                keys,
                values,
                ctypes.byref(count),
                ctypes.byref(opts),
            )
            # libbpf 1.x returns -errno directly from the low-level calls.
            if rc < 0 and rc != -errno.ENOENT:
                raise BpfError(f"draining {self.name}", rc)
            for i in range(count.value):
                out.append((keys[i], values[i]))
            if rc < 0:  # ENOENT: this was the last (possibly partial) batch
                return out
            first = False

    def drain_raw(self, key_size: int, value_size: int) -> tuple[bytes, bytes]:
        """:meth:`drain` as two packed buffers, every key and then every value, for a
        caller that unpacks them in bulk (a ctypes field read costs ~0.3 us, and a
        busy host's syscall maps hold thousands of entries a window)."""
        keys_out, values_out = bytearray(), bytearray()
        chunk = max(1, min(self.max_entries, 4096, DRAIN_BATCH_BYTES // value_size))
        keys = ctypes.create_string_buffer(key_size * chunk)
        values = ctypes.create_string_buffer(value_size * chunk)
        token = c_uint32()
        opts = _BpfMapBatchOpts(sz=ctypes.sizeof(_BpfMapBatchOpts))
        first = True
        while True:
            count = c_uint32(chunk)
            rc = lib().bpf_map_lookup_and_delete_batch(
                self.fd,
                None if first else ctypes.byref(token),
                ctypes.byref(token),
                keys,
                values,
                ctypes.byref(count),
                ctypes.byref(opts),
            )
            if rc < 0 and rc != -errno.ENOENT:
                raise BpfError(f"draining {self.name}", rc)
            keys_out += keys.raw[: count.value * key_size]
            values_out += values.raw[: count.value * value_size]
            if rc < 0:  # ENOENT: this was the last (possibly partial) batch
                return bytes(keys_out), bytes(values_out)
            first = False


class RingBuffer:
    """A BPF ring buffer read in place: its pages mapped into this process, each
    record handed to ``callback`` as bytes (for events a few per second to a few
    thousand per second).

    Read by hand rather than through libbpf's ``ring_buffer__poll``: its per-record
    callback into Python (a ctypes trampoline, the GIL taken back each time) cost
    more than the record's own handling on a host starting processes all day.
    The layout is the kernel's (kernel/bpf/ringbuf.c): a consumer page we write,
    then the producer page and the data pages, mapped twice in a row so that a
    record wrapping the end reads straight on. Each record has an 8-byte header:
    its length (bit 31: still being written, bit 30: discarded) and a page offset.
    """

    _BUSY = 1 << 31
    _DISCARD = 1 << 30

    def __init__(self, bpf_map: BpfMap, callback: Callable[[bytes], None]) -> None:
        self.name = bpf_map.name
        self._callback = callback
        self.errors = 0  # records whose callback raised
        self._fd = bpf_map.fd
        size = bpf_map.max_entries
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise BpfError(f"ring buffer {bpf_map.name} has a bad size {size}", -errno.EINVAL)
        self._mask = size - 1
        page = mmap.PAGESIZE
        try:
            rw = mmap.PROT_READ | mmap.PROT_WRITE
            self._consumer = mmap.mmap(self._fd, page, mmap.MAP_SHARED, rw)
            self._producer = mmap.mmap(
                self._fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
        except OSError as exc:
            code = -(exc.errno or errno.EIO)
            raise BpfError(f"mapping ring buffer {bpf_map.name}", code) from None
        self._data = memoryview(self._producer)[page:]
        self._epoll = select.epoll()
        self._epoll.register(self._fd, select.EPOLLIN)
        # wake(): ends a wait at once, so a poller need not wake up to look for a stop
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)

    def wake(self) -> None:
        """End the current (or next) :meth:`poll`'s wait now."""
        os.eventfd_write(self._wake, 1)

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for records; hand over all there are; how many."""
        if not self._consume_pending():
            try:
                events = self._epoll.poll(timeout_ms / 1000)
            except InterruptedError:
                return 0
            if any(fd == self._wake for fd, _ in events):
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)
        done = self.consume()
        if not done and self._consume_pending():
            # The next record is reserved and still being written (a BPF program
            # preempted between reserve and submit): epoll says readable until it is
            # done, so wait a little rather than spin.
            time.sleep(0.001)
        return done

    def _consume_pending(self) -> bool:
        return self._position(self._producer) != self._position(self._consumer)

    @staticmethod
    def _position(page: mmap.mmap) -> int:
        return int.from_bytes(page[:8], "little")

    def consume(self) -> int:
        """Hand over every complete record; how many."""
        unpack, data, mask = _RECORD_HEADER.unpack_from, self._data, self._mask
        consumer = self._position(self._consumer)
        producer = self._position(self._producer)
        count = 0
        while consumer < producer:
            length, _ = unpack(data, consumer & mask)
            if length & self._BUSY:
                break  # reserved, still being written: the next poll reads it
            record = None
            if not length & self._DISCARD:
                start = (consumer & mask) + 8
                record = bytes(data[start : start + length])
            consumer += (8 + (length & ~(self._BUSY | self._DISCARD)) + 7) & ~7
            self._consumer[:8] = consumer.to_bytes(8, "little")  # its space is free again
            if record is not None:
                count += 1
                try:
                    self._callback(record)
                except Exception as exc:  # one bad record must not stop every later one
                    self.errors += 1
                    if self.errors == 1:
                        print(
                            f"aperture-agent: warning: a {self.name} record could not be "
                            f"handled ({type(exc).__name__}: {exc}); later ones are counted",
                            file=sys.stderr,
                        )
            if consumer >= producer:
                producer = self._position(self._producer)  # more may have come meanwhile
        return count

    def close(self) -> None:
        if not self._epoll.closed:
            self._epoll.close()
            os.close(self._wake)
            self._data.release()
            self._producer.close()
            self._consumer.close()


class BpfLink:
    def __init__(self, ptr: int) -> None:
        self._ptr = ptr

    def destroy(self) -> None:
        if self._ptr:
            lib().bpf_link__destroy(self._ptr)
            self._ptr = 0


@dataclass(frozen=True)
class VerifierStats:
    """The verifier's own count of its work on one program."""

    insns: int  # instructions it processed (the kernel refuses at 1,000,000)
    seconds: float


class BpfProgram:
    def __init__(self, ptr: int, name: str) -> None:
        self._ptr = ptr
        self.name = name

    @property
    def fd(self) -> int:
        return int(lib().bpf_program__fd(self._ptr))

    def set_autoload(self, autoload: bool) -> None:
        _check(lib().bpf_program__set_autoload(self._ptr, autoload), f"configuring {self.name}")

    def keep_verifier_stats(self) -> None:
        """Before load: keep the verifier's summary (its log level 4) for :meth:`verifier_stats`."""
        # Room to spare: with a 64 KiB buffer one 6.18 build refused a load that
        # processed 112k instructions with ENOSPC, though its summary is ~170 bytes.
        self._log = ctypes.create_string_buffer(1 << 20)
        _check(lib().bpf_program__set_log_buf(self._ptr, self._log, len(self._log)), self.name)
        _check(lib().bpf_program__set_log_level(self._ptr, 4), f"configuring {self.name}")

    def verifier_stats(self) -> VerifierStats:
        """After load: how much work the verifier did (see :meth:`keep_verifier_stats`)."""
        text = self._log.value.decode(errors="replace") if self._log is not None else ""
        insns = re.search(r"processed (\d+) insns", text)
        usec = re.search(r"verification time (\d+) usec", text)
        if insns is None or usec is None:
            raise BpfError(f"no verifier summary kept for {self.name}", errno.ENODATA)
        return VerifierStats(int(insns.group(1)), int(usec.group(1)) / 1e6)

    def attach(self) -> BpfLink:
        """Attach by section name (tracepoints, tp_btf, raw tracepoints)."""
        return BpfLink(_check_ptr(lib().bpf_program__attach(self._ptr), f"attaching {self.name}"))

    def attach_perf_event(self, perf_fd: int) -> BpfLink:
        """Attach to an open perf event; the link then owns ``perf_fd``."""
        ptr = lib().bpf_program__attach_perf_event(self._ptr, perf_fd)
        return BpfLink(_check_ptr(ptr, f"attaching {self.name} to a perf event"))


class BpfObject:
    """An opened (then loaded) BPF object file."""

    def __init__(self, path: Path) -> None:
        take_messages()
        self.path = path
        ptr = lib().bpf_object__open_file(str(path).encode(), None)
        self._ptr = _check_ptr(ptr, f"opening BPF object {path}")
        self._links: list[BpfLink] = []

    def map(self, name: str) -> BpfMap:
        ptr = lib().bpf_object__find_map_by_name(self._ptr, name.encode())
        if not ptr:
            raise BpfError(f"map {name!r} not in {self.path.name}", errno.ENOENT)
        return BpfMap(ptr, name)

    def programs(self) -> list[BpfProgram]:
        """Every program in the object, in its order."""
        out: list[BpfProgram] = []
        ptr = lib().bpf_object__next_program(self._ptr, None)
        while ptr:
            out.append(BpfProgram(ptr, lib().bpf_program__name(ptr).decode()))
            ptr = lib().bpf_object__next_program(self._ptr, ptr)
        return out

    def program(self, name: str) -> BpfProgram:
        ptr = lib().bpf_object__find_program_by_name(self._ptr, name.encode())
        if not ptr:
            raise BpfError(f"program {name!r} not in {self.path.name}", errno.ENOENT)
        return BpfProgram(ptr, name)

    def load(self) -> None:
        rc = lib().bpf_object__load(self._ptr)
        if rc < 0:
            log = "\n".join(take_messages()[-30:])
            raise BpfError(f"loading {self.path.name} into the kernel", rc, log)

    def keep(self, link: BpfLink) -> BpfLink:
        """Own a link so :meth:`close` detaches it."""
        self._links.append(link)
        return link

    def close(self) -> None:
        for link in self._links:
            link.destroy()
        self._links.clear()
        if self._ptr:
            lib().bpf_object__close(self._ptr)
            self._ptr = 0

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
