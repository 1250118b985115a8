"""OTLP profiles in: the OpenTelemetry eBPF profiler's real export against what Pyroscope
makes of it, the mapping of types, frames and attributes, and every refusal."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from aperture.formats.limits import Budget, ImportLimits, TooLarge
from aperture.formats.otlp import (
    MalformedOtlp,
    OtlpProfile,
    OtlpTooLarge,
    UnknownOtlpSampleType,
    read_otlp_profiles,
)
from aperture.model import EventType, Frame, FrameKind, Profile
from aperture.proto.otlp import profiles_pb2
from aperture.proto.otlp import profiles_service_pb2 as pb
from aperture.transforms import merge
from interop_files import INTEROP, needs_interop

OTLP = INTEROP / "otlp"
REQUEST = OTLP / "otel-ebpf-profile.pb.bin"

# --- the real export ---------------------------------------------------------------------


def _only(profiles: list[OtlpProfile], event_type: EventType) -> OtlpProfile:
    """Every service's profile of one type, merged."""
    of_type = [p for p in profiles if p.profile.event_type is event_type]
    merged = merge([p.profile for p in of_type])
    return OtlpProfile(merged, {}, of_type[0].source)


def _named_services() -> set[int]:
    """Pids whose resource names an executable: Pyroscope files those under
    ``unknown_service:<executable>``, so its expected output (the query of
    ``service_name="unknown_service"``) holds every other process."""
    request = pb.ExportProfilesServiceRequest.FromString(REQUEST.read_bytes())
    pids = set()
    for rp in request.resource_profiles:
        attrs = {kv.key: kv.value for kv in rp.resource.attributes}
        if "process.executable.name" in attrs:
            pids.add(attrs["process.pid"].int_value)
    return pids


_LINE = re.compile(r"^(.*)\[.*\]@.*:\d+$")
_MAPPING = re.compile(r"^\S+ ([^(]*)")


def _kernel_module(mapping: str) -> str:
    """Our module for a kernel mapping in Pyroscope's output: ``[kernel]`` for vmlinux."""
    match = _MAPPING.match(mapping)
    assert match, mapping
    name = match.group(1)
    return "[kernel]" if name == "vmlinux" else f"[{name}]"


def _pyroscope(path: Path) -> Counter[tuple[tuple[str, str], ...]]:
    """Pyroscope's stacks, root first as (function, module), and their values."""
    doc = json.loads(path.read_text())
    stacks: Counter[tuple[tuple[str, str], ...]] = Counter()
    for sample in doc["samples"]:
        leaf_first = []
        for loc in sample["locations"]:
            module = _kernel_module(loc["mapping"])
            for line in loc["lines"]:  # leaf first within a location too
                match = _LINE.match(line)
                assert match, line
                leaf_first.append((match.group(1), module))
        stacks[tuple(reversed(leaf_first))] += int(sample["values"])
    return stacks


def _ours(profile: Profile, skip_pids: set[int]) -> Counter[tuple[tuple[str, str], ...]]:
    stacks: Counter[tuple[tuple[str, str], ...]] = Counter()
    for s in profile.samples:
        if s.pid not in skip_pids:
            assert all(f.kind is FrameKind.KERNEL for f in s.stack), s.stack
            stacks[tuple((f.name, f.module) for f in s.stack)] += s.value
    return stacks


@pytest.fixture(scope="module")
def fixture_profiles() -> list[OtlpProfile]:
    if not REQUEST.is_file():
        pytest.skip(f"{REQUEST} is missing: it comes with ../shared/interop")
    return read_otlp_profiles(REQUEST.read_bytes())


@needs_interop
def test_the_export_is_one_cpu_and_one_off_cpu_profile(
    fixture_profiles: list[OtlpProfile],
) -> None:
    request = pb.ExportProfilesServiceRequest.FromString(REQUEST.read_bytes())
    first = request.resource_profiles[0].scope_profiles[0].profiles[0]
    kinds = {(p.profile.event_type, p.profile.unit, p.source) for p in fixture_profiles}
    assert kinds == {(EventType.CPU, "samples", "samples/count"),
                     (EventType.OFFCPU, "nanoseconds", "off_cpu/nanoseconds")}  # fmt: skip
    # its resources say only process.* (pid, executable): the service is OpenTelemetry's
    # default name, unknown_service:<executable> where the resource names one
    services = {p.labels["service.name"] for p in fixture_profiles}
    assert services == {"unknown_service", "unknown_service:containerd",
                        "unknown_service:kwin_wayland",
                        "unknown_service:xdg-desktop-portal"}, services  # fmt: skip
    for one in fixture_profiles:
        assert set(one.labels) == {"service.name"}
        named = one.labels["service.name"] != "unknown_service"
        assert all((s.pid in _named_services()) == named for s in one.profile.samples)
        assert one.profile.start_ns == first.time_unix_nano
        assert one.profile.end_ns == first.time_unix_nano + first.duration_nano
    cpu = _only(fixture_profiles, EventType.CPU).profile
    assert cpu.frequency_hz == 20  # period: cpu/nanoseconds 50,000,000
    stamps = sum(len(s.timestamps_unix_nano) for rp in request.resource_profiles
                 for sp in rp.scope_profiles for p in sp.profiles for s in p.samples
                 if not s.values)  # fmt: skip
    assert cpu.total == stamps == 10  # timestamps only: one sample each


@needs_interop
def test_cpu_stacks_and_totals_are_pyroscopes(fixture_profiles: list[OtlpProfile]) -> None:
    """Pyroscope stores CPU as cpu/nanoseconds: each of our samples is one period,
    1e9 / 20 Hz = 50,000,000 ns, so its values are ours times that, exactly."""
    cpu = _only(fixture_profiles, EventType.CPU).profile
    period_ns = 1_000_000_000 // cpu.frequency_hz
    assert period_ns * cpu.frequency_hz == 1_000_000_000
    expected = _pyroscope(OTLP / "otel-ebpf-profile-cpu.out.json")
    ours = _ours(cpu, _named_services())
    assert set(ours) == set(expected)
    assert {k: v * period_ns for k, v in ours.items()} == dict(expected)
    assert sum(ours.values()) * period_ns == sum(expected.values()) == 500_000_000


@needs_interop
def test_off_cpu_stacks_and_totals_are_pyroscopes(fixture_profiles: list[OtlpProfile]) -> None:
    offcpu = _only(fixture_profiles, EventType.OFFCPU).profile
    expected = _pyroscope(OTLP / "otel-ebpf-profile-offcpu.out.json")
    ours = _ours(offcpu, _named_services())
    assert set(ours) == set(expected)
    assert ours == expected
    assert sum(ours.values()) == sum(expected.values()) == 250_725_419_905


@needs_interop
def test_the_processes_pyroscope_files_elsewhere_keep_their_user_frames(
    fixture_profiles: list[OtlpProfile],
) -> None:
    offcpu = _only(fixture_profiles, EventType.OFFCPU).profile
    named = _named_services()
    assert named == {2001, 3066, 3088}
    frames = [f for s in offcpu.samples if s.pid in named for f in s.stack]
    # Go, symbolized by the profiler: USER in the containerd mapping, with its line
    go = [f for f in frames if f.name == "internal/runtime/syscall.Syscall6"]
    assert go and go[0].kind is FrameKind.USER and go[0].module == "containerd"
    assert go[0].line == 36
    # native, unsymbolized: module+0xoffset, as pprof's reader names them
    libc = [f for f in frames if f.module == "libc.so.6"]
    assert libc and all(f.kind is FrameKind.USER for f in libc)
    assert all(f.name == f"libc.so.6+0x{f.offset:x}" for f in libc)
    # kernel stacks sit on top of the user ones (root first: user code calls the kernel)
    containerd = [s for s in offcpu.samples if s.pid == 2001]
    assert containerd and all(s.comm == "containerd" for s in containerd)
    assert all(s.stack[0].kind is FrameKind.USER and s.stack[-1].kind is FrameKind.KERNEL
               for s in containerd)  # fmt: skip


@needs_interop
def test_kernel_threads_are_named_after_their_thread(fixture_profiles: list[OtlpProfile]) -> None:
    offcpu = _only(fixture_profiles, EventType.OFFCPU).profile
    [migration] = {(s.pid, s.tid, s.comm, s.thread) for s in offcpu.samples if s.pid == 66}
    assert migration == (66, 66, "migration/10", "migration/10")


@needs_interop
def test_gzip_is_read_like_raw(fixture_profiles: list[OtlpProfile]) -> None:
    again = read_otlp_profiles(gzip.compress(REQUEST.read_bytes()))
    assert [p.profile.samples for p in again] == [p.profile.samples for p in fixture_profiles]


@needs_interop
@pytest.mark.parametrize(
    "limits", [ImportLimits(samples=100), ImportLimits(strings=100), ImportLimits(frames=1000),
               ImportLimits(locations=50), ImportLimits(inflated_bytes=10_000)],
)  # fmt: skip
def test_a_request_past_its_budget_is_refused_as_too_large(limits: ImportLimits) -> None:
    with pytest.raises(OtlpTooLarge) as info:
        read_otlp_profiles(REQUEST.read_bytes(), budget=Budget(limits))
    assert isinstance(info.value, TooLarge) and isinstance(info.value, MalformedOtlp)
    assert "\n" not in str(info.value)


@needs_interop
def test_damaged_exports_raise_nothing_but_malformed_otlp() -> None:
    data = REQUEST.read_bytes()
    rng = random.Random(1)
    for _ in range(60):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        cut = bytes(damaged[: rng.randrange(1, len(damaged) + 1)])
        for one in (bytes(damaged), cut):
            try:
                read_otlp_profiles(one)
            except MalformedOtlp as exc:
                assert "\n" not in str(exc)


# --- requests built here -----------------------------------------------------------------


class Request:
    """A small ``ExportProfilesServiceRequest``: every table starts with its zero entry."""

    def __init__(self) -> None:
        self.message = pb.ExportProfilesServiceRequest()
        d = self.d = self.message.dictionary
        d.string_table.append("")
        for table in (d.mapping_table, d.location_table, d.function_table, d.link_table,
                      d.attribute_table, d.stack_table):  # fmt: skip
            table.add()

    def s(self, text: str) -> int:
        if text in self.d.string_table:
            return list(self.d.string_table).index(text)
        self.d.string_table.append(text)
        return len(self.d.string_table) - 1

    def attr(self, key: str, value: str | int) -> int:
        a = self.d.attribute_table.add(key_strindex=self.s(key))
        if isinstance(value, int):
            a.value.int_value = value
        else:
            a.value.string_value = value
        return len(self.d.attribute_table) - 1

    def mapping(self, path: str, start: int = 0, limit: int = 0, offset: int = 0) -> int:
        self.d.mapping_table.add(filename_strindex=self.s(path), memory_start=start,
                                 memory_limit=limit, file_offset=offset)  # fmt: skip
        return len(self.d.mapping_table) - 1

    def location(self, frame_type: str, mapping: int = 0, address: int = 0,
                 *lines: tuple[str, str, int]) -> int:  # fmt: skip
        """``lines`` (function, file, line) innermost first, as OTLP has inlined ones."""
        loc = self.d.location_table.add(mapping_index=mapping, address=address)
        if frame_type:
            loc.attribute_indices.append(self.attr("profile.frame.type", frame_type))
        for name, path, line in lines:
            self.d.function_table.add(name_strindex=self.s(name), filename_strindex=self.s(path))
            loc.lines.add(function_index=len(self.d.function_table) - 1, line=line)
        return len(self.d.location_table) - 1

    def stack(self, *leaf_first: int) -> int:
        self.d.stack_table.add(location_indices=leaf_first)
        return len(self.d.stack_table) - 1

    def profile(
        self,
        sample_type: tuple[str, str] = ("samples", "count"),
        period: tuple[str, str, int] = ("cpu", "nanoseconds", 50_000_000),
        resource: dict[str, str | int] | None = None,
    ) -> profiles_pb2.Profile:
        rp = self.message.resource_profiles.add()
        for key, value in (resource or {}).items():
            kv = rp.resource.attributes.add(key=key)
            if isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.string_value = value
        p = rp.scope_profiles.add().profiles.add(time_unix_nano=10**18, duration_nano=5 * 10**9)
        p.sample_type.type_strindex, p.sample_type.unit_strindex = map(self.s, sample_type)
        p.period_type.type_strindex = self.s(period[0])
        p.period_type.unit_strindex = self.s(period[1])
        p.period = period[2]
        return p

    def bytes(self) -> bytes:
        return self.message.SerializeToString()


def _one(data: bytes) -> OtlpProfile:
    [one] = read_otlp_profiles(data)
    return one


def test_the_messages_are_ours_so_a_real_opentelemetry_proto_loads_beside_them() -> None:
    assert pb.ExportProfilesServiceRequest.DESCRIPTOR.full_name == (
        "aperture.otlp.collector.profiles.v1development.ExportProfilesServiceRequest"
    )


def test_frames_are_root_first_with_their_kinds_modules_and_lines() -> None:
    r = Request()
    libc = r.mapping("/usr/lib/x86_64-linux-gnu/libc.so.6", 0x7F0000000000, 0x7F0000200000, 0x1000)
    python = r.mapping("/usr/bin/python3.12")
    kernel = r.mapping("vmlinux")
    ext4 = r.mapping("ext4")
    stack = r.stack(
        r.location("kernel", kernel, 0x1234, ("do_sys_poll", "", 0)),  # leaf
        r.location("kernel", ext4, 0x99, ("ext4_read", "", 0)),
        r.location("native", libc, 0x7F0000000100),  # unsymbolized
        r.location("cpython", python, 0x40, ("Encoder.encode", "/usr/lib/json/encoder.py", 203)),
        r.location("jvm", 0, 0x10, ("Main.run", "Main.java", 7)),
        # inlined: helper into main, innermost first
        r.location("native", python, 0x500, ("helper", "a.c", 3), ("main", "a.c", 9)),
        r.location("", 0, 0x77),  # no type, no mapping, no function
    )
    r.profile().samples.add(stack_index=stack, timestamps_unix_nano=[10**18 + 1])
    [sample] = _one(r.bytes()).profile.samples
    assert sample.stack == (
        Frame("[unknown]+0x77", "[unknown]", FrameKind.UNKNOWN, 0x77),
        Frame("main", "python3.12", FrameKind.USER, 0x500, 9),
        Frame("helper", "python3.12", FrameKind.USER, 0x500, 3),
        Frame("Main.run", "Main.java", FrameKind.JIT, 0, 7),
        Frame("Encoder.encode", "/usr/lib/json/encoder.py", FrameKind.PYTHON, 0, 203),
        Frame("libc.so.6+0x1100", "libc.so.6", FrameKind.USER, 0x1100),
        Frame("ext4_read", "[ext4]", FrameKind.KERNEL, 0x99),
        Frame("do_sys_poll", "[kernel]", FrameKind.KERNEL, 0x1234),
    )


@pytest.mark.parametrize(
    ("sample_type", "period", "values", "expected"),
    [
        # CPU samples at 100 Hz, values or one per timestamp
        (("samples", "count"), ("cpu", "nanoseconds", 10_000_000), [3], (EventType.CPU, 3, 100)),
        (("samples", "count"), ("cpu", "nanoseconds", 10_000_000), [], (EventType.CPU, 2, 100)),
        # CPU time at a period becomes samples; without one, 1 ns a sample (pprof's reader)
        (("cpu", "nanoseconds"), ("cpu", "nanoseconds", 10_000_000), [30_000_000],
         (EventType.CPU, 3, 100)),
        (("cpu", "milliseconds"), ("cpu", "milliseconds", 10), [30], (EventType.CPU, 3, 100)),
        (("cpu", "nanoseconds"), ("", "", 0), [30], (EventType.CPU, 30, 1_000_000_000)),
        # off-CPU in nanoseconds, under both names the eBPF profiler has used
        (("off_cpu", "nanoseconds"), ("", "", 0), [1500], (EventType.OFFCPU, 1500, 0)),
        (("events", "nanoseconds"), ("", "", 0), [1500], (EventType.OFFCPU, 1500, 0)),
        (("off_cpu", "microseconds"), ("", "", 0), [2], (EventType.OFFCPU, 2000, 0)),
        # wall-clock samples, and the registry's other types (a heap profile's bytes)
        (("samples", "count"), ("wall", "nanoseconds", 1_000_000), [4],
         (EventType.WALL, 4_000_000, 0)),
        (("alloc_space", "bytes"), ("", "", 0), [4096], (EventType.ALLOC_SPACE, 4096, 0)),
    ],
)  # fmt: skip
def test_sample_types_become_our_types_in_our_units(
    sample_type: tuple[str, str],
    period: tuple[str, str, int],
    values: list[int],
    expected: tuple[EventType, int, int],
) -> None:
    r = Request()
    stack = r.stack(r.location("native", 0, 0x10, ("f", "", 0)))
    stamps = [] if values else [10**18 + 1, 10**18 + 2]
    r.profile(sample_type, period).samples.add(stack_index=stack, values=values,
                                               timestamps_unix_nano=stamps)  # fmt: skip
    one = _one(r.bytes())
    event_type, total, _ = expected
    assert (one.profile.event_type, one.profile.total, one.profile.frequency_hz) == expected
    assert one.profile.unit == {EventType.CPU: "samples", EventType.ALLOC_SPACE: "bytes"}.get(
        event_type, "nanoseconds"
    )
    assert one.source == "/".join(sample_type) and total


@pytest.mark.parametrize("sample_type", [("gpu_busy", "percent"), ("off_cpu", "count"), ("", "")])
def test_a_sample_type_we_cannot_map_refuses_the_request_naming_it(
    sample_type: tuple[str, str],
) -> None:
    r = Request()
    stack = r.stack(r.location("native", 0, 0x10, ("f", "", 0)))
    r.profile().samples.add(stack_index=stack, values=[1])  # a good profile first
    r.profile(sample_type, ("", "", 0)).samples.add(stack_index=stack, values=[5])
    with pytest.raises(UnknownOtlpSampleType) as info:
        read_otlp_profiles(r.bytes())
    assert f"sample type {sample_type[0]}/{sample_type[1]}," in str(info.value)
    assert "profile 1 (resource 1, scope 0)" in str(info.value)


def test_process_and_thread_attributes_fill_samples_and_the_rest_are_labels() -> None:
    r = Request()
    stack = r.stack(r.location("native", 0, 0x10, ("f", "", 0)))
    resource: dict[str, str | int] = {
        "service.name": "checkout", "host.name": "web-1", "process.pid": 41,
        "process.executable.name": "java", "process.command_line": "java -jar app.jar",
    }  # fmt: skip
    for tid in (41, 42):
        sample = r.profile(resource=resource).samples.add(stack_index=stack, values=[1])
        for key, value in (("thread.id", tid), ("thread.name", f"worker-{tid}"),
                           ("cpu.logical_number", 3), ("span.kind", "server")):  # fmt: skip
            sample.attribute_indices.append(r.attr(key, value))
    # a resource key given by reference into the string table (opentelemetry-proto 1.10)
    r.message.resource_profiles[1].resource.attributes.add(key_strindex=r.s("deployment.env"))
    r.message.resource_profiles[1].resource.attributes[-1].value.string_value_strindex = r.s("prod")
    out = read_otlp_profiles(r.bytes())
    by_labels = {tuple(sorted(o.labels.items())): o.profile for o in out}
    base = {"service.name": "checkout", "host.name": "web-1", "span.kind": "server"}
    prod = {**base, "deployment.env": "prod"}
    assert set(by_labels) == {tuple(sorted(base.items())), tuple(sorted(prod.items()))}
    samples = sorted((s.pid, s.tid, s.comm, s.thread) for p in out for s in p.profile.samples)
    assert samples == [(41, 41, "java", "worker-41"), (41, 42, "java", "worker-42")]


def test_profiles_of_one_type_and_labels_are_merged_and_their_windows_joined() -> None:
    r = Request()
    stack = r.stack(r.location("native", 0, 0x10, ("f", "", 0)))
    first = r.profile(resource={"process.pid": 1})
    first.samples.add(stack_index=stack, values=[2])
    second = r.profile(resource={"process.pid": 2})
    second.time_unix_nano, second.duration_nano = 10**18 + 10**9, 10**10
    second.samples.add(stack_index=stack, values=[3])
    one = _one(r.bytes())
    assert sorted((s.pid, s.value) for s in one.profile.samples) == [(1, 2), (2, 3)]
    assert (one.profile.start_ns, one.profile.end_ns) == (10**18, 10**18 + 11 * 10**9)


def test_a_window_comes_from_sample_timestamps_or_now_when_the_profile_has_no_time() -> None:
    r = Request()
    stack = r.stack(r.location("native", 0, 0x10, ("f", "", 0)))
    p = r.profile()
    p.time_unix_nano = p.duration_nano = 0
    p.samples.add(stack_index=stack, timestamps_unix_nano=[500, 900, 700])
    assert (_one(r.bytes()).profile.start_ns, _one(r.bytes()).profile.end_ns) == (500, 900)
    p.ClearField("samples")
    p.duration_nano = 100
    p.samples.add(stack_index=stack, values=[1])
    profile = read_otlp_profiles(r.bytes(), now_ns=10_000)[0].profile
    assert (profile.start_ns, profile.end_ns) == (9_900, 10_000)


@pytest.mark.parametrize(
    "data",
    [b"", b"not a protobuf", b"\x0a\xff\xff\xff\xff\x0f", b"\x18\x01",
     b"\x1f\x8b\x08\x00garbage"],
)  # fmt: skip
def test_bytes_that_are_no_request_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedOtlp) as info:
        read_otlp_profiles(data)
    assert "\n" not in str(info.value)


def _broken(change: str) -> bytes:
    r = Request()
    stack = r.stack(r.location("native", 0, 0x10, ("f", "", 0)))
    p = r.profile()
    sample = p.samples.add(stack_index=stack, values=[1])
    if change == "stack":
        sample.stack_index = 9
    elif change == "location":
        r.d.stack_table[stack].location_indices.append(40)
    elif change == "function":
        r.d.location_table[1].lines[0].function_index = 77
    elif change == "attribute":
        sample.attribute_indices.append(-1)
    elif change == "string":
        p.sample_type.type_strindex = 1000
    elif change == "mapping":
        r.d.location_table[1].mapping_index = 5
    elif change == "values and timestamps":
        sample.timestamps_unix_nano.extend([1, 2])
    elif change == "neither":
        sample.ClearField("values")
    elif change == "negative":
        sample.values[0] = -5
    elif change == "huge":
        sample.values[:] = [2**62, 2**62]
    elif change == "string table":
        r.d.string_table[0] = "x"
    return r.bytes()


@pytest.mark.parametrize(
    ("change", "says"),
    [("stack", "refers to stack 9, but the stack table has 2"),
     ("location", "stack 1 refers to location 40"),
     ("function", "location 1 refers to function 77"),
     ("attribute", "refers to attribute -1"),
     ("string", "refers to string 1000"),
     ("mapping", "location 1 refers to mapping 5"),
     ("values and timestamps", "has 1 values for 2 timestamps"),
     ("neither", "has neither values nor timestamps"),
     ("negative", "has a negative value"),
     ("huge", "adds up to more than a signed 64-bit value"),
     ("string table", "must start with an empty string")],
)  # fmt: skip
def test_dangling_indices_and_bad_samples_are_malformed(change: str, says: str) -> None:
    with pytest.raises(MalformedOtlp) as info:
        read_otlp_profiles(_broken(change))
    assert says in str(info.value)
    assert "\n" not in str(info.value)
