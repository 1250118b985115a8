"""The wasmtime host: load a filter once, run it on whole batches in a fresh sandbox.

Each batch gets a new store and instance of the compiled module: fuel and the memory
limit apply per batch, a bump allocator never runs out across batches, and a trap
leaves nothing behind. No WASI and no host functions: a module importing anything is
refused at load.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from aperture.errors import UsageError
from aperture.filters.abi import Record, decode_result, encode_batch
from aperture.model import EventType, LockStat, Profile, Sample
from aperture.profile_types import PROFILE_TYPES
from aperture.transforms import lock_samples

if TYPE_CHECKING:
    import wasmtime

log = logging.getLogger("aperture.filters")

DEFAULT_FUEL = 50_000_000
DEFAULT_MEMORY = 64 << 20
WASM_PAGE = 64 << 10
FailurePolicy = Literal["open", "closed"]


class FilterError(UsageError):
    """A filter that cannot be used at all (refused at start), in one line."""


class _BatchFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``64M``, ``512k``, ``1G`` or bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (like 64M, 512k or 1048576)")
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) << {"b": 0, "k": 10, "m": 20, "g": 30}[unit]


@dataclass(frozen=True)
class FilterOptions:
    fuel: int = DEFAULT_FUEL
    memory_bytes: int = DEFAULT_MEMORY
    failure: FailurePolicy = "open"
    arg: bytes = b""


@dataclass
class FilterStats:
    batches: int = 0
    records_in: int = 0
    records_kept: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    last_error: str = ""


def _wasmtime() -> object:
    try:
        import wasmtime
    except ImportError:
        raise FilterError(
            "WASM filters need the wasmtime package: pip install 'aperture[filters]'."
        ) from None
    return wasmtime


class WasmFilter:
    """A compiled filter module with its sandbox limits."""

    def __init__(
        self,
        path: Path,
        options: FilterOptions | None = None,
        *,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        _wasmtime()
        import wasmtime

        self.path = path
        self.options = options or FilterOptions()
        self.stats = FilterStats()
        self._on_failure = on_failure
        self._lock = threading.Lock()  # the agent's windows and ingest may call from threads
        if self.options.fuel < 1:
            raise FilterError("--filter-fuel must be at least 1.")
        if self.options.memory_bytes < WASM_PAGE:
            raise FilterError("--filter-memory must be at least 64k (one WASM page).")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FilterError(f"cannot read the filter {path}: {exc.strerror or exc}.") from None
        config = wasmtime.Config()
        config.consume_fuel = True
        # Traps by explicit checks, not by SIGSEGV/SIGILL handlers: the aggregator
        # embeds chDB, whose own handlers replace wasmtime's, and a filter's trap
        # (an out-of-bounds load, `unreachable`) then killed the whole process.
        config.signals_based_traps = False
        self._engine = wasmtime.Engine(config)
        try:
            if path.suffix == ".wat":
                data = bytes(wasmtime.wat2wasm(data.decode("utf-8", "replace")))
            self._module = wasmtime.Module(self._engine, data)
        except (wasmtime.WasmtimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
            raise FilterError(f"{path} is not a valid WASM module ({first}).") from None
        imports = [f"{i.module}.{i.name}" for i in self._module.imports]
        if imports:
            raise FilterError(
                f"the filter {path} imports {', '.join(imports[:3])}: filters may import "
                "nothing (no WASI, no host functions); rebuild it without imports."
            )
        exports = {e.name for e in self._module.exports}
        missing = [n for n in ("memory", "aperture_alloc", "aperture_filter") if n not in exports]
        if missing:
            raise FilterError(
                f"the filter {path} does not export {', '.join(missing)} (see docs/filters.md)."
            )
        wrong = _wrong_exports(self._module)
        if wrong:
            raise FilterError(f"the filter {path} exports {wrong} (see docs/filters.md).")
        try:  # the limits must at least let the module start
            self._instantiate()
        except _BatchFailed as exc:
            raise FilterError(f"the filter {path} cannot start: {exc}.") from None

    def _instantiate(self) -> tuple[wasmtime.Store, wasmtime.Instance]:
        import wasmtime

        store = wasmtime.Store(self._engine)
        store.set_limits(memory_size=self.options.memory_bytes)
        store.set_fuel(self.options.fuel)
        try:
            instance = wasmtime.Instance(store, self._module, [])
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise _BatchFailed("start", _one_line(exc)) from None
        return store, instance

    def run(self, records: Sequence[Record]) -> list[bool]:
        """Keep flags for ``records`` (one call for the whole batch); raises on failure."""
        return self.run_encoded(encode_batch(records, self.options.arg), len(records))

    def run_encoded(self, batch: bytes, count: int) -> list[bool]:
        """Keep flags for an already encoded batch of ``count`` records."""
        import wasmtime

        store, instance = self._instantiate()
        exports = instance.exports(store)
        memory, alloc = exports["memory"], exports["aperture_alloc"]
        run = exports["aperture_filter"]
        if not (
            isinstance(memory, wasmtime.Memory)
            and isinstance(alloc, wasmtime.Func)
            and isinstance(run, wasmtime.Func)
        ):
            raise _BatchFailed("abi", "memory/aperture_alloc/aperture_filter have the wrong kind")
        try:
            ptr = _u32(alloc(store, len(batch)))
            if ptr == 0 or ptr + len(batch) > memory.data_len(store):
                raise _BatchFailed(
                    "memory", f"aperture_alloc({len(batch)}) gave no room for the batch"
                )
            memory.write(store, batch, ptr)
            out = _u32(run(store, ptr, len(batch)))
            if out == 0 or out + count > memory.data_len(store):
                raise _BatchFailed("abi", "aperture_filter returned a result outside memory")
            result = bytes(memory.read(store, out, out + count))
        except wasmtime.Trap as exc:
            code = exc.trap_code
            reason = "fuel" if code == wasmtime.TrapCode.OUT_OF_FUEL else "trap"
            what = code.name.lower().replace("_", " ") if code is not None else _one_line(exc)
            raise _BatchFailed(reason, what) from None
        except wasmtime.WasmtimeError as exc:
            raise _BatchFailed("trap", _one_line(exc)) from None
        return decode_result(result, count)

    def summary(self) -> str:
        """One line: what the filter kept and how often it failed."""
        st = self.stats
        failed = ", ".join(f"{n} {reason}" for reason, n in sorted(st.failures.items()))
        if st.last_error:
            failed += f" (last: {st.last_error})"
        return (
            f"filter {self.path.name}: kept {st.records_kept} of {st.records_in} records in "
            f"{st.batches} batches" + (f"; failed batches: {failed}" if failed else "")
        )

    def keep(self, records: Sequence[Record]) -> list[bool] | None:
        """Keep flags, or None when the filter failed (counted and reported)."""
        with self._lock:
            self.stats.batches += 1
            self.stats.records_in += len(records)
            try:
                flags = self.run(records)
            except _BatchFailed as exc:
                self.stats.failures[exc.reason] += 1
                self.stats.last_error = str(exc)
                action = "kept unfiltered" if self.options.failure == "open" else "dropped"
                message = (
                    f"filter {self.path.name} failed on a batch of {len(records)} records "
                    f"({exc.reason}: {exc}); the batch was {action} "
                    f"(--filter-failure {self.options.failure})"
                )
                log.warning("%s", message)
                if self._on_failure is not None:
                    self._on_failure(message)
                if self.options.failure == "open":
                    self.stats.records_kept += len(records)
                return None
            self.stats.records_kept += sum(flags)
            return flags


# The ABI's exports: a call with other parameter types would fail in the wasmtime binding.
_SIGNATURES = {"aperture_alloc": (["i32"], ["i32"]), "aperture_filter": (["i32", "i32"], ["i32"])}


def _wrong_exports(module: wasmtime.Module) -> str:
    """What is wrong with the kinds and signatures of the ABI exports, or ""."""
    import wasmtime

    for export in module.exports:
        ty = export.type
        if export.name == "memory" and not isinstance(ty, wasmtime.MemoryType):
            return "'memory' as something other than a memory"
        want = _SIGNATURES.get(export.name)
        if want is None:
            continue
        params, results = want
        if not isinstance(ty, wasmtime.FuncType):
            return f"{export.name} as something other than a function"
        got = ([str(t) for t in ty.params], [str(t) for t in ty.results])
        if got != want:
            return (
                f"{export.name}({', '.join(got[0])}) -> ({', '.join(got[1])}), not "
                f"{export.name}({', '.join(params)}) -> {results[0]}"
            )
    return ""


def _u32(value: object) -> int:
    if not isinstance(value, int):
        raise _BatchFailed("abi", "an export returned a non-integer")
    return value & 0xFFFFFFFF


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sample_records(profile: Profile) -> list[Record]:
    return [
        Record(profile.event_type, s.pid, s.tid, s.comm, s.value, s.stack) for s in profile.samples
    ]


def lock_records(locks: Sequence[LockStat]) -> list[Record]:
    return [Record(EventType.LOCK, k.pid, 0, k.comm, k.wait_ns, k.stack) for k in locks]


def apply_filter(flt: WasmFilter, profile: Profile) -> Profile:
    """The profile with only the records the filter keeps (samples of stacks, lock records).

    Syscall profiles carry no stacks and pass unchanged. On failure the policy decides:
    ``open`` returns the profile as it was, ``closed`` one without records.
    """
    if profile.event_type is EventType.LOCK and profile.locks:
        flags = flt.keep(lock_records(profile.locks))
        if flags is None:
            flags = [flt.options.failure == "open"] * len(profile.locks)
        locks = [k for k, keep in zip(profile.locks, flags, strict=True) if keep]
        return dataclasses.replace(profile, locks=locks, samples=lock_samples(locks))
    if PROFILE_TYPES[profile.event_type].has_stacks and profile.samples:
        flags = flt.keep(sample_records(profile))
        if flags is None:
            flags = [flt.options.failure == "open"] * len(profile.samples)
        samples: list[Sample] = [s for s, keep in zip(profile.samples, flags, strict=True) if keep]
        return dataclasses.replace(profile, samples=samples)
    return profile
