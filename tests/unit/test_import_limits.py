"""What one import request may make the aggregator build: counted before it is built.

Issue 17: 491 KB of gzip naming 300,000 distinct pids were all turned into
Python objects (and stored); 16 KB naming 8 million empty samples cost hundreds
of MB in parsed messages before being refused. Both are refused now from counts
read off the wire, and real profiles (google/pprof's large.cpu) pass.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import time

import pytest

from aperture.aggregator.pyroscope import folded_profile, push_request
from aperture.formats.limits import LIMITS, Budget, ImportLimits, TooLarge
from aperture.formats.pprof import MAX_LABEL_SETS, MalformedPprof, PprofTooLarge, from_pprof
from aperture.formats.protoscan import count_fields, payloads
from aperture.proto.pprof import profile_pb2 as pb
from aperture.proto.pyroscope import push_pb2
from interop_files import INTEROP, needs_interop
from pprof_bodies import distinct_pids, distinct_pids_gzip, empty_samples_gzip

LARGE_CPU = INTEROP / "pprof" / "large.cpu"


def test_300k_distinct_pids_are_refused_before_any_sample_is_built() -> None:
    body = distinct_pids_gzip(300_000)
    assert len(body) < 500_000  # the body: 491 KB of gzip, 4.8 MB inflated
    started = time.perf_counter()
    with pytest.raises(PprofTooLarge) as refused:
        from_pprof(body, comm="svc")
    # Counted off the wire: no parse, no sample (the old code took 2 s and 200 MB here).
    assert time.perf_counter() - started < 1.0
    assert str(refused.value) == (
        "the request has more samples (stacks) than the 100,000 one import may have "
        "(100,001 or more): send shorter profiles, or fewer per request"
    )
    assert isinstance(refused.value, MalformedPprof) and isinstance(refused.value, TooLarge)


def test_a_parse_bomb_of_empty_samples_is_refused_from_its_counts() -> None:
    body = empty_samples_gzip(8_000_000)
    assert len(body) < 20_000
    with pytest.raises(PprofTooLarge, match="more samples"):
        from_pprof(body)


def test_at_the_limit_everything_is_imported() -> None:
    [imported] = from_pprof(distinct_pids(LIMITS.samples).SerializeToString(), comm="svc")
    assert len(imported.profile.samples) == LIMITS.samples


@needs_interop
def test_large_cpu_is_within_every_limit() -> None:
    budget = Budget()
    [imported] = from_pprof(LARGE_CPU.read_bytes(), budget=budget)
    assert len(imported.profile.samples) == 20_430
    assert budget.spent["samples"] == 20_430 and budget.spent["frames"] == 500_002
    for what, spent in budget.spent.items():
        assert spent <= getattr(LIMITS, what) / 2, what


@pytest.mark.parametrize(
    ("limits", "what"),
    [
        (ImportLimits(locations=0), "locations"),
        (ImportLimits(functions=0), "functions"),
        (ImportLimits(strings=6), "strings"),
        (ImportLimits(lines=0), "location lines"),
        (ImportLimits(frames=9), "stack frames"),
        (ImportLimits(labels=19), "sample labels"),
        (ImportLimits(inflated_bytes=100), "bytes of profile data once inflated"),
    ],
)
def test_each_count_is_bounded(limits: ImportLimits, what: str) -> None:
    data = gzip.compress(distinct_pids(10, labels=1).SerializeToString())
    with pytest.raises(PprofTooLarge, match=f"more {what} than"):
        from_pprof(data, budget=Budget(limits))


def test_the_budget_is_the_whole_request_not_each_profile() -> None:
    budget = Budget(dataclasses.replace(LIMITS, samples=150))
    data = distinct_pids(100).SerializeToString()
    from_pprof(data, budget=budget)
    with pytest.raises(PprofTooLarge, match=r"\(151 or more\)"):
        from_pprof(data, budget=budget)


def test_label_sets_past_the_limit_are_merged_as_they_come() -> None:
    p = distinct_pids(0)
    base = len(p.string_table)
    p.string_table.extend(["span", *(f"s{i}" for i in range(MAX_LABEL_SETS + 50))])
    for i in range(MAX_LABEL_SETS + 50):
        p.sample.add(location_id=[1], value=[2]).label.add(key=base, str=base + 1 + i)
    [imported] = from_pprof(p.SerializeToString())
    assert imported.labels == {} and imported.profile.total == 2 * (MAX_LABEL_SETS + 50)


@needs_interop
def test_wire_counts_match_the_parsed_message() -> None:
    raw = gzip.decompress(LARGE_CPU.read_bytes())
    message = pb.Profile.FromString(raw)
    counts = count_fields(raw, {2: 10**9, 3: 10**9, 4: 10**9, 5: 10**9, 6: 10**9})
    assert counts == {2: len(message.sample), 3: len(message.mapping),
                      4: len(message.location), 5: len(message.function),
                      6: len(message.string_table)}  # fmt: skip
    assert count_fields(raw, {2: 10}) == {2: 11}  # stops past the limit
    assert payloads(raw, 6, 10) is None
    assert payloads(raw, 3, 10) == [m.SerializeToString() for m in message.mapping]


def push(series: int, labels: int = 1, profiles: int = 1) -> bytes:
    request = push_pb2.PushRequest()
    for _ in range(series):
        one = request.series.add()
        for i in range(labels):
            one.labels.add(name=f"k{i}", value="v")
        for _ in range(profiles):
            one.samples.add(raw_profile=b"x")
    return request.SerializeToString()


def test_a_push_is_counted_before_it_is_parsed() -> None:
    assert len(push_request(push(256), "application/proto")) == 256
    with pytest.raises(TooLarge, match="more than 256 series"):
        push_request(push(257), "application/proto")
    with pytest.raises(TooLarge, match="more profiles than the 256"):
        push_request(push(2, profiles=200), "application/proto")
    with pytest.raises(ValueError, match="series 0 has more than 64 labels"):
        push_request(push(1, labels=65), "application/proto")
    # a million empty series in 2 MB: refused from the wire, never 1M messages
    with pytest.raises(TooLarge, match="more than 256 series"):
        push_request(b"\x0a\x00" * 1_000_000, "application/proto")


def test_a_json_push_is_bounded_before_it_is_parsed() -> None:
    body = json.dumps({"series": [{"labels": [{"name": "a", "value": "b"}]}] * 300_000})
    with pytest.raises(TooLarge, match="JSON push has more than 102,400"):
        push_request(body.encode(), "application/json")
    with pytest.raises(TooLarge, match="more than 256 series"):
        push_request(json.dumps({"series": [{}] * 300}).encode(), "application/json")


def test_folded_bodies_are_counted_before_they_are_parsed() -> None:
    def folded(text: str, budget: Budget) -> None:
        folded_profile(text, lines=False, service="s", profile_type="cpu", units="",
                       sample_rate=100, start_ns=1, end_ns=2, budget=budget)  # fmt: skip

    small = Budget(dataclasses.replace(LIMITS, samples=10, frames=30))
    with pytest.raises(TooLarge, match="more samples"):
        folded("a 1\n" * 20, small)
    with pytest.raises(TooLarge, match="more stack frames"):
        folded(";".join("f" * 40) + " 1\n", small)
    profile = folded_profile("main;a 1\nmain;b 2\n", lines=False, service="s",
                             profile_type="cpu", units="", sample_rate=100, start_ns=1,
                             end_ns=2)  # fmt: skip
    roots = {s.stack[0] for s in profile.samples}
    assert len(roots) == 1 and len({id(s.stack[0]) for s in profile.samples}) == 1  # one Frame
