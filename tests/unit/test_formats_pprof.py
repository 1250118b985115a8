"""pprof out and in: what pprof readers rely on, round trips, other tools' files, refusals."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest
from test_formats import HOT_A, MAIN, lock_profile, rich_profile, simple_profile

from aperture.formats.pprof import (
    MalformedPprof,
    UnknownSampleType,
    from_pprof,
    read_pprof,
    to_pprof,
    to_pprof_message,
)
from aperture.formats.registry import write_profile, writer_for
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample
from aperture.proto.pprof import profile_pb2 as pb
from aperture.wire import Identity, encode


def strings(message: pb.Profile) -> list[str]:
    return list(message.string_table)


def names_leaf_first(message: pb.Profile, sample: pb.Sample) -> list[str]:
    s = message.string_table
    functions = {f.id: s[f.name] for f in message.function}
    locations = {loc.id: loc for loc in message.location}
    return [functions[line.function_id] for i in sample.location_id
            for line in locations[i].line]  # fmt: skip


def sample_key(s: Sample) -> tuple[object, ...]:
    return (s.stack, s.pid, s.tid, s.comm, s.thread)


# --- writing -------------------------------------------------------------------------


def test_cpu_profile_has_count_and_nanoseconds_with_the_period_of_its_frequency() -> None:
    message = to_pprof_message(simple_profile())
    s = strings(message)
    assert [(s[t.type], s[t.unit]) for t in message.sample_type] == [
        ("samples", "count"),
        ("cpu", "nanoseconds"),
    ]
    assert (s[message.period_type.type], s[message.period_type.unit]) == ("cpu", "nanoseconds")
    assert message.period == round(1e9 / 99)
    assert message.time_nanos == 1_000_000_000 and message.duration_nanos == 10_000_000_000
    assert s[message.default_sample_type] == "cpu"
    assert s[0] == ""
    values = sorted(list(x.value) for x in message.sample)
    assert values == [[25, 25 * message.period], [25, 25 * message.period],
                      [50, 50 * message.period]]  # fmt: skip


def test_locations_are_leaf_first_with_addresses_mappings_and_labels() -> None:
    message = to_pprof_message(rich_profile())
    s = strings(message)
    by_names = {tuple(names_leaf_first(message, x)): x for x in message.sample}
    read = by_names[("ksys_read", "entry_SYSCALL_64", "read_file", "main")]
    labels = {s[lb.key]: (s[lb.str] if lb.str else lb.num) for lb in read.label}
    assert labels == {"pid": 100, "tid": 100, "comm": "app"}
    mappings = {m.id: s[m.filename] for m in message.mapping}
    assert sorted(mappings.values()) == ["[jit]", "[kernel]", "app", "libstdc++.so.6", "node"]
    assert all(m.has_functions and not s[m.build_id] for m in message.mapping)
    locations = {loc.id: loc for loc in message.location}
    leaf = locations[read.location_id[0]]
    assert mappings[leaf.mapping_id] == "[kernel]"
    assert leaf.address == 0xFFFF_FFFF_8100_0000
    # ids are unique and nonzero, as pprof requires
    for items in (message.mapping, message.location, message.function):
        ids = [x.id for x in items]
        assert 0 not in ids and len(set(ids)) == len(ids)


def test_lock_profile_has_contentions_and_delay_from_its_lock_records() -> None:
    stack = (MAIN, Frame("worker", "app"), Frame("pthread_mutex_lock", "libc.so.6"))
    profile = Profile(EventType.LOCK, "nanoseconds", locks=[
        LockStat(7, "db", 0x10, stack, contentions=3, wait_ns=3_000),
        LockStat(7, "db", 0x20, stack, contentions=2, wait_ns=1_000),
    ])  # fmt: skip
    message = to_pprof_message(profile)
    s = strings(message)
    assert [(s[t.type], s[t.unit]) for t in message.sample_type] == [
        ("contentions", "count"),
        ("delay", "nanoseconds"),
    ]
    assert [list(x.value) for x in message.sample] == [[5, 4_000]]
    # without lock records the samples' wait time is the delay
    assert [list(x.value) for x in to_pprof_message(lock_profile()).sample] == [
        [0, 1_230_000],
        [0, 770_000],
    ]


def test_the_same_profile_gives_the_same_bytes_and_syscalls_are_refused() -> None:
    assert to_pprof(rich_profile()) == to_pprof(rich_profile())
    assert to_pprof(rich_profile())[:2] == b"\x1f\x8b"
    with pytest.raises(ValueError, match="syscall"):
        to_pprof(Profile(EventType.SYSCALL, "nanoseconds"))


def test_pb_gz_suffix_writes_pprof_for_cpu_and_lock(tmp_path: Path) -> None:
    assert writer_for("x.pb.gz").name == "pprof"
    assert writer_for("x.PB.GZ", EventType.LOCK).name == "pprof"
    write_profile(simple_profile(), tmp_path / "cpu.pb.gz")
    [imported] = from_pprof((tmp_path / "cpu.pb.gz").read_bytes())
    assert imported.profile.total == 100


# --- reading -------------------------------------------------------------------------


def test_cpu_round_trip_keeps_stacks_processes_threads_and_frequency() -> None:
    original = rich_profile()
    original.start_ns, original.end_ns = 10**18, 10**18 + 10**10  # (0 means "unset" in pprof)
    [back] = from_pprof(to_pprof(original))
    assert back.labels == {}
    p = back.profile
    assert (p.event_type, p.unit, p.frequency_hz) == (EventType.CPU, "samples", 99)
    assert (p.start_ns, p.end_ns) == (original.start_ns, original.end_ns)
    want = Counter({sample_key(s): s.value for s in original.samples})
    assert Counter({sample_key(s): s.value for s in p.samples}) == want
    kinds = {f.name: f.kind for s in p.samples for f in s.stack}
    assert kinds["ksys_read"] is FrameKind.KERNEL
    assert kinds["LazyCompile:*render app.js:10"] is FrameKind.JIT
    assert kinds["main"] is FrameKind.USER


def test_lock_round_trip_gives_lock_records_and_wait_samples() -> None:
    [back] = from_pprof(to_pprof(lock_profile()))
    p = back.profile
    assert p.event_type is EventType.LOCK
    assert sorted(lk.wait_ns for lk in p.locks) == [770_000, 1_230_000]
    assert sorted(s.value for s in p.samples) == [770_000, 1_230_000]
    assert all(s.comm == "db" and s.pid == 7 for s in p.samples)


def build(
    types: list[tuple[str, str]],
    samples: list[tuple[list[int], list[int], dict[str, str]]],
    *,
    period: tuple[str, str, int] | None = None,
    functions: tuple[str, ...] = ("main", "hot", "cold"),
    time_nanos: int = 0,
) -> pb.Profile:
    """A small pprof as other tools write it: location i+1 is function i+1, no mappings."""
    table = [""]

    def s(text: str) -> int:
        if text not in table:
            table.append(text)
        return table.index(text)

    p = pb.Profile(time_nanos=time_nanos, duration_nanos=10**10)
    for t, u in types:
        p.sample_type.add(type=s(t), unit=s(u))
    if period:
        p.period_type.type, p.period_type.unit, p.period = s(period[0]), s(period[1]), period[2]
    for i, name in enumerate(functions, start=1):
        p.function.add(id=i, name=s(name), filename=s("/src/app.py"))
        p.location.add(id=i).line.add(function_id=i, line=10 * i)
    for locs, values, labels in samples:
        x = p.sample.add(location_id=locs, value=values)
        for key, value in labels.items():
            x.label.add(key=s(key), str=s(value))
    p.string_table.extend(table)
    return p


def test_pyroscope_style_cpu_nanoseconds_become_samples_at_its_frequency() -> None:
    p = build([("cpu", "nanoseconds")], [([2, 1], [440_000_000], {}), ([3, 1], [10_000_000], {})],
              period=("cpu", "nanoseconds", 10_000_000), time_nanos=5 * 10**18)  # fmt: skip
    [imported] = from_pprof(p.SerializeToString(), comm="pyapp")
    profile = imported.profile
    assert (profile.event_type, profile.unit, profile.frequency_hz) == (
        EventType.CPU,
        "samples",
        100,
    )
    assert profile.start_ns == 5 * 10**18 and profile.end_ns == 5 * 10**18 + 10**10
    got = {tuple(f.name for f in s.stack): s.value for s in profile.samples}
    assert got == {("main", "hot"): 44, ("main", "cold"): 1}
    assert {s.comm for s in profile.samples} == {"pyapp"}
    # a function's source file names the module when there is no mapping
    assert {f.module for s in profile.samples for f in s.stack} == {"app.py"}


def test_go_style_cpu_profile_uses_its_sample_count() -> None:
    p = build([("samples", "count"), ("cpu", "nanoseconds")], [([2, 1], [7, 70_000_000], {})],
              period=("cpu", "nanoseconds", 10_000_000))  # fmt: skip
    [imported] = from_pprof(gzip.compress(p.SerializeToString()), now_ns=10**19)
    assert [s.value for s in imported.profile.samples] == [7]
    # no time_nanos: the window ends now
    assert imported.profile.end_ns == 10**19


def test_go_mutex_profile_is_two_mutex_types_and_ours_comes_back_a_lock_profile() -> None:
    p = build([("contentions", "count"), ("delay", "nanoseconds")],
              [([2, 1], [4, 9_000], {}), ([3, 1], [1, 1_000], {})],
              period=("contentions", "count", 1))  # fmt: skip
    # Go's mutex and block profiles look alike: refused unless the sender says which
    with pytest.raises(UnknownSampleType, match="say which this is"):
        from_pprof(p.SerializeToString())
    # Go's mutex profile: delay at the unlock of a contended mutex, not our futex waits
    imported = {i.profile.event_type: i
                for i in from_pprof(p.SerializeToString(), comm="svc", hint="mutex")}  # fmt: skip
    assert set(imported) == {EventType.MUTEX_CONTENTIONS, EventType.MUTEX_DELAY}
    assert imported[EventType.MUTEX_CONTENTIONS].profile.total == 5
    assert imported[EventType.MUTEX_DELAY].profile.total == 10_000
    assert imported[EventType.MUTEX_DELAY].columns == (1,)
    # told it is a block profile (Pyroscope's __name__), the same pair is blocking
    blocked = {i.profile.event_type for i in from_pprof(p.SerializeToString(), hint="block")}
    assert blocked == {EventType.BLOCK_CONTENTIONS, EventType.BLOCK_DELAY}
    # our own lock export names its type, so it is read back as lock waits
    lock = imported[EventType.MUTEX_DELAY].profile
    ours = Profile(EventType.LOCK, "nanoseconds", start_ns=1, end_ns=2)
    ours.locks = [LockStat(pid=1, comm="svc", address=0, stack=s.stack, contentions=2,
                           wait_ns=s.value) for s in lock.samples]  # fmt: skip
    [back] = from_pprof(to_pprof(ours))
    assert back.profile.event_type is EventType.LOCK
    assert sorted((lk.contentions, lk.wait_ns) for lk in back.profile.locks) == [
        (2, 1_000), (2, 9_000)]  # fmt: skip


def test_memory_columns_are_their_own_types_and_written_back_as_such() -> None:
    p = build([("alloc_space", "bytes"), ("alloc_objects", "count")], [([2, 1], [4096, 2], {})])
    imported = {i.profile.event_type: i.profile for i in from_pprof(p.SerializeToString())}
    assert set(imported) == {EventType.ALLOC_SPACE, EventType.ALLOC_OBJECTS}
    space = imported[EventType.ALLOC_SPACE]
    assert (space.unit, space.total) == ("bytes", 4096)
    assert imported[EventType.ALLOC_OBJECTS].total == 2
    message = to_pprof_message(space)
    s = message.string_table
    assert [(s[t.type], s[t.unit]) for t in message.sample_type] == [("alloc_space", "bytes")]


def test_a_sample_type_without_a_profile_type_is_refused_by_name() -> None:
    p = build([("samples", "count"), ("frobs", "widgets")], [([2, 1], [3, 4], {})])
    with pytest.raises(UnknownSampleType, match=r"frobs/widgets \(value 1\)"):
        from_pprof(p.SerializeToString())
    # a column with no value is no data: left out, not refused
    p = build([("samples", "count"), ("frobs", "widgets")], [([2, 1], [3, 0], {})])
    [cpu] = from_pprof(p.SerializeToString())
    assert cpu.profile.event_type is EventType.CPU


def test_time_nanos_written_in_microseconds_is_read_as_such() -> None:
    # py-spy (Pyroscope's pyspy-1.pb.gz) writes microseconds into time_nanos
    p = build([("samples", "count")], [([2, 1], [3], {})], time_nanos=1_694_153_500_000_000)
    [imported] = from_pprof(p.SerializeToString())
    assert imported.profile.start_ns == 1_694_153_500_000_000_000
    # build()'s duration is 10**10: as microseconds that is 2.8 hours, which fits a day
    assert imported.profile.end_ns - imported.profile.start_ns == 10**13
    # py-spy's own: 10,000,000 us is the 10 s it uploads every
    pyspy = build([("samples", "count")], [([2, 1], [3], {})], time_nanos=1_694_153_500_000_000)
    pyspy.duration_nanos = 10_000_000
    [one] = from_pprof(pyspy.SerializeToString())
    assert one.profile.end_ns - one.profile.start_ns == 10 * 10**9
    # in seconds, a duration of 10**10 s would be 317 years: kept as nanoseconds (10 s)
    secs = build([("samples", "count")], [([2, 1], [3], {})], time_nanos=1_694_153_500)
    [one] = from_pprof(secs.SerializeToString())
    assert one.profile.start_ns == 1_694_153_500 * 10**9
    assert one.profile.end_ns - one.profile.start_ns == 10**10


def test_samples_split_by_their_string_labels_and_known_labels_fill_fields() -> None:
    p = build([("samples", "count")], [
        ([2, 1], [3], {"region": "eu", "thread_name": "MainThread"}),
        ([3, 1], [1], {"region": "us"}),
        ([2, 1], [2], {"region": "eu", "comm": "worker"}),
    ])  # fmt: skip
    imported = {tuple(sorted(i.labels.items())): i.profile for i in from_pprof(
        p.SerializeToString(), comm="svc")}  # fmt: skip
    assert set(imported) == {(("region", "eu"),), (("region", "us"),)}
    eu = imported[(("region", "eu"),)]
    assert sorted((s.comm, s.thread, s.value) for s in eu.samples) == [
        ("svc", "MainThread", 3),
        ("worker", "", 2),
    ]


def test_inlined_lines_expand_into_frames_root_first() -> None:
    p = build([("samples", "count")], [([2, 1], [5], {})], functions=("main", "outer", "inl"))
    # location 2 holds inl inlined into outer: line[0] is the inlined function
    p.location[1].ClearField("line")
    p.location[1].line.add(function_id=3)
    p.location[1].line.add(function_id=2)
    [imported] = from_pprof(p.SerializeToString())
    assert [f.name for f in imported.profile.samples[0].stack] == ["main", "outer", "inl"]


def test_location_without_lines_is_named_module_plus_offset() -> None:
    p = build([("samples", "count")], [([2, 1], [5], {})])
    p.mapping.add(id=1, memory_start=0x400000, memory_limit=0x500000, file_offset=0x1000,
                  filename=len(p.string_table))  # fmt: skip
    p.string_table.append("/usr/bin/server")
    p.location[1].ClearField("line")
    p.location[1].mapping_id = 1
    p.location[1].address = 0x400123
    [imported] = from_pprof(p.SerializeToString())
    leaf = imported.profile.samples[0].stack[-1]
    assert (leaf.name, leaf.module, leaf.offset) == ("server+0x1123", "server", 0x1123)


# --- refusals --------------------------------------------------------------------------


def good() -> bytes:
    return build([("samples", "count")], [([2, 1], [5], {})]).SerializeToString()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (gzip.compress(good())[:-12], "damaged or truncated"),
        (b"\x1f\x8b" + b"\x00" * 20, "damaged"),
        (b"\xff\xff\xff\xff", "not a pprof profile"),
        (b"hello, world", "not a pprof profile"),
        # a valid protobuf of another message: parses, but is not a profile
        (encode([simple_profile()], Identity("a", "h"), 1).SerializeToString(),
         "not a pprof profile"),
    ],
)  # fmt: skip
def test_damaged_or_foreign_bytes_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPprof, match=reason):
        from_pprof(data)


def test_inflated_size_is_bounded() -> None:
    bomb = gzip.compress(b"\x00" * (2 << 20))
    with pytest.raises(MalformedPprof, match="inflates to more than"):
        read_pprof(bomb, max_bytes=1 << 20)


def broken(change: str) -> pb.Profile:
    p = build([("samples", "count")], [([2, 1], [5], {"k": "v"})])
    n = len(p.string_table)
    if change == "string":
        p.function[0].name = n + 5
    elif change == "location":
        p.sample[0].location_id.append(99)
    elif change == "function":
        p.location[0].line[0].function_id = 42
    elif change == "mapping":
        p.location[0].mapping_id = 7
    elif change == "values":
        p.sample[0].value.append(1)
    elif change == "label":
        p.sample[0].label[0].key = -1
    elif change == "duplicate":
        p.location[1].id = 1
    elif change == "zero":
        p.function[0].id = 0
    elif change == "table":
        p.string_table[0] = "x"
    elif change == "types":
        p.ClearField("sample_type")
    elif change == "negative":
        p.sample[0].value[0] = -3
    return p


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("string", "function 1 name refers to string 14, but the table has 9"),
        ("location", "sample 0 refers to location 99"),
        ("function", "location 1 refers to function 42"),
        ("mapping", "location 1 refers to mapping 7"),
        ("values", "sample 0 has 2 values for 1 sample types"),
        ("label", "a label of sample 0 refers to string -1"),
        ("duplicate", "two locations have id 1"),
        ("zero", "a function has id 0"),
        ("table", "must start with an empty string"),
        ("types", "no sample types"),
        ("negative", "negative value"),
    ],
)
def test_dangling_references_are_refused_with_the_reason(change: str, reason: str) -> None:
    with pytest.raises(MalformedPprof) as info:
        from_pprof(broken(change).SerializeToString())
    assert reason in str(info.value)


def test_hot_function_survives_a_round_trip_through_pprof() -> None:
    [back] = from_pprof(to_pprof(simple_profile()))
    hot = sum(s.value for s in back.profile.samples if s.stack[-1] == HOT_A)
    assert hot == 75


def test_python_frames_are_functions_with_a_file_and_locations_with_a_line() -> None:
    from test_formats import python_profile

    message = to_pprof_message(python_profile())
    s = message.string_table
    functions = {f.id: f for f in message.function}
    hot = [f for f in message.function if s[f.name] == "hot_a"]
    assert len(hot) == 1 and s[hot[0].filename] == "/srv/app/work.py"  # one function, two lines
    hot_lines = sorted(loc.line[0].line for loc in message.location
                       if loc.line[0].function_id == hot[0].id)  # fmt: skip
    assert hot_lines == [12, 14]
    # no mapping named after a source file; native frames keep theirs and line 0
    assert {s[m.filename] for m in message.mapping} == {
        "libpython3.11.so.1.0", "_json.cpython-311-x86_64-linux-gnu.so"}  # fmt: skip
    name = {loc.id: s[functions[loc.line[0].function_id].name] for loc in message.location}
    native = next(loc for loc in message.location if name[loc.id] == "encoder_listencode")
    assert native.line[0].line == 0 and native.mapping_id


def test_lines_survive_a_pprof_round_trip_with_the_imported_kind_mapping() -> None:
    from test_formats import python_profile

    (imported,) = from_pprof(to_pprof(python_profile()))
    lines = {(f.name, f.line) for s in imported.profile.samples for f in s.stack}
    assert {("hot_a", 12), ("hot_a", 14), ("dumps", 231), ("Py_RunMain", 0)} <= lines
    # imported frames keep the existing kind mapping (by module), only the line is new
    assert {f.kind for s in imported.profile.samples for f in s.stack} == {FrameKind.USER}
