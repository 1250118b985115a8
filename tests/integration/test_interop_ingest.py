"""Other tools' profiles into a real aggregator over HTTP, and every export format back out.

pprof uploads (REST and `aperture import`), Pyroscope's Connect push and legacy
/ingest, refusals that store nothing, and collapsed/speedscope/pprof round trips
through the REST API and `aperture export`.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aggregator_proc import AggregatorProcess
from aperture.cli.main import main as cli
from aperture.formats.collapsed import parse_collapsed
from aperture.formats.pprof import from_pprof, to_pprof
from aperture.model import EventType, Frame, LockStat, Profile, Sample, fold
from aperture.proto.pyroscope import push_pb2
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode
from interop_files import INTEROP, needs_interop
from pprof_bodies import distinct_pids_gzip

MAIN, HOT, COLD = (
    Frame("main", "app", offset=0x1000),
    Frame("hot", "app", offset=0x1100),
    Frame("cold", "app", offset=0x1200),
)
NOW = time.time_ns() // 10**9 * 10**9
TOKEN = "test-token"


def cpu_profile(end_ns: int = NOW - 60 * 10**9) -> Profile:
    return Profile(EventType.CPU, "samples", samples=[
        Sample((MAIN, HOT), 300, pid=7, tid=7, comm="app", thread="main"),
        Sample((MAIN, HOT), 150, pid=7, tid=8, comm="app", thread="worker"),
        Sample((MAIN, COLD), 50, pid=7, tid=7, comm="app", thread="main"),
        Sample((Frame("idle", "db"),), 20, pid=9, tid=9, comm="db"),
    ], start_ns=end_ns - 10**10, end_ns=end_ns, frequency_hz=99)  # fmt: skip


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("interop") / "agg").start()
    channel = grpc.insecure_channel(proc.grpc_target)
    stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
    md = [("authorization", f"Bearer {TOKEN}")]
    assert stub.Push(encode([cpu_profile()], Identity("rt-agent", "h1", {"rt": "1"}), 1),
                     metadata=md).accepted  # fmt: skip
    waits = [LockStat(7, "app", 0xA0, (MAIN, HOT), contentions=4, wait_ns=4_000_000)]
    lock = Profile(EventType.LOCK, "nanoseconds", start_ns=NOW - 70 * 10**9,
                   end_ns=NOW - 60 * 10**9, locks=waits)  # fmt: skip
    assert stub.Push(encode([lock], Identity("rt-agent", "h1", {"rt": "1"}), 2),
                     metadata=md).accepted  # fmt: skip
    channel.close()
    yield proc
    proc.stop()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api(agg: AggregatorProcess, path: str, **params: Any) -> Any:
    response = httpx.get(f"{agg.http}/api/v1/{path}", params=params, headers=auth(), timeout=10)
    assert response.status_code == 200, response.text
    return response.json() if "json" in response.headers["content-type"] else response.content


def top(agg: AggregatorProcess, **params: Any) -> dict[str, dict[str, Any]]:
    data = api(agg, "top", **{"from": "-1h", **params})
    return {f["name"]: f for f in data["functions"]} | {"": {"total": data["total"]}}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli([*args, "--token", TOKEN])
    out, err = capsys.readouterr()
    return code, out, err


# --- pprof upload --------------------------------------------------------------------


def test_pprof_upload_is_queryable_by_its_labels(agg: AggregatorProcess) -> None:
    data = to_pprof(cpu_profile(NOW - 30 * 10**9))
    response = httpx.post(f"{agg.http}/api/v1/ingest/pprof",
                          params={"service": "checkout", "label.env": "up1"},
                          content=data, headers=auth())  # fmt: skip
    assert response.status_code == 200, response.text
    [stored] = response.json()["profiles"]
    assert stored["agent_id"] == "pprof:checkout" and stored["total"] == 520
    assert stored["labels"] == {"env": "up1", "service": "checkout"}
    funcs = top(agg, **{"label.env": "up1"})
    assert funcs[""]["total"] == 520 and funcs["hot"]["self"] == 450
    agents = {a["agent_id"]: a for a in api(agg, "agents")}
    assert agents["pprof:checkout"]["host"] == "import"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"", 400, "no body"),
        (b"not a profile at all", 400, "not a pprof profile"),
        (gzip.compress(to_pprof(cpu_profile())[:-4]), 400, "damaged or truncated"),
        (to_pprof(cpu_profile())[:-30], 400, "damaged or truncated"),
    ],
)
def test_bad_uploads_are_refused_with_the_reason_and_store_nothing(
    agg: AggregatorProcess, body: bytes, status: int, reason: str
) -> None:
    before = agg.metric('aperture_pushes_total{status="malformed"}')
    response = httpx.post(f"{agg.http}/api/v1/ingest/pprof",
                          params={"service": "broken", "label.env": "bad"},
                          content=body, headers=auth())  # fmt: skip
    assert response.status_code == status
    assert reason in response.json()["detail"]
    assert top(agg, **{"label.env": "bad"})[""]["total"] == 0
    assert "pprof:broken" not in {a["agent_id"] for a in api(agg, "agents")}
    assert agg.metric('aperture_pushes_total{status="malformed"}') == before + 1


def test_uploads_need_the_token(agg: AggregatorProcess) -> None:
    data = to_pprof(cpu_profile())
    for headers in ({}, auth("wrong"), {"Authorization": "Basic " + base64.b64encode(
            f"u:{TOKEN}".encode()).decode()}):  # fmt: skip
        response = httpx.post(f"{agg.http}/api/v1/ingest/pprof", content=data, headers=headers)
        assert response.status_code == 401


# --- Pyroscope -------------------------------------------------------------------------


def push_body(service: str, tags: dict[str, str], raw: bytes) -> push_pb2.PushRequest:
    request = push_pb2.PushRequest()
    series = request.series.add()
    for name, value in {"__name__": "process_cpu", "service_name": service, **tags}.items():
        series.labels.add(name=name, value=value)
    series.samples.add(raw_profile=raw, ID="1")
    return request


def test_connect_push_with_gzip_and_basic_auth(agg: AggregatorProcess) -> None:
    body = gzip.compress(push_body("shop", {"zone": "c1"}, to_pprof(cpu_profile()))
                         .SerializeToString())  # fmt: skip
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    response = httpx.post(f"{agg.http}/push.v1.PusherService/Push", content=body, headers={
        "Content-Type": "application/proto", "Content-Encoding": "gzip",
        "Authorization": f"Basic {basic}"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/proto"
    assert push_pb2.PushResponse.FromString(response.content) == push_pb2.PushResponse()
    funcs = top(agg, **{"label.zone": "c1", "label.service_name": "shop"})
    assert funcs["hot"]["self"] == 450
    wrong = base64.b64encode(b"anyone:nope").decode()
    refused = httpx.post(f"{agg.http}/push.v1.PusherService/Push", content=body, headers={
        "Content-Type": "application/proto", "Content-Encoding": "gzip",
        "Authorization": f"Basic {wrong}"})  # fmt: skip
    assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"


def test_connect_push_in_json(agg: AggregatorProcess) -> None:
    raw = base64.b64encode(to_pprof(cpu_profile())).decode()
    body = {"series": [{"labels": [{"name": "service_name", "value": "jsonapp"},
                                   {"name": "zone", "value": "j1"}],
                        "samples": [{"rawProfile": raw}]}]}  # fmt: skip
    response = httpx.post(f"{agg.http}/push.v1.PusherService/Push", json=body, headers=auth())
    assert response.status_code == 200 and response.json() == {}
    assert top(agg, **{"label.zone": "j1"})["hot"]["self"] == 450


def test_connect_push_refusals_are_connect_errors(agg: AggregatorProcess) -> None:
    url = f"{agg.http}/push.v1.PusherService/Push"
    bad = push_body("shop", {"zone": "bad"}, b"garbage").SerializeToString()
    response = httpx.post(url, content=bad, headers={**auth(), "Content-Type": "application/proto"})
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "invalid_argument" and "series 0 profile 0" in error["message"]
    grpc_like = httpx.post(url, content=bad, headers={**auth(), "Content-Type": "application/grpc"})
    assert grpc_like.status_code == 415
    assert top(agg, **{"label.zone": "bad"})[""]["total"] == 0


def test_legacy_ingest_folded_lines_and_pprof(agg: AggregatorProcess) -> None:
    url = f"{agg.http}/ingest"
    until = NOW // 10**9 - 5
    common = {"from": str(until - 10), "until": str(until), "sampleRate": "100",
              "spyName": "test"}  # fmt: skip
    folded = httpx.post(url, params={**common, "name": "legacy.cpu{team=a,kind=folded}"},
                        content=b"main;work;hot 30\nmain;cold 10\n", headers=auth())  # fmt: skip
    assert folded.status_code == 200, folded.text
    lines = httpx.post(url, params={**common, "name": "legacy.cpu{team=a,kind=lines}",
                                    "format": "lines"},
                       content=b"main;hot\nmain;hot\nmain;cold\n", headers=auth())  # fmt: skip
    assert lines.status_code == 200, lines.text
    raw = httpx.post(url, params={**common, "name": "legacy.cpu{team=a,kind=pprof}",
                                  "format": "pprof"},
                     content=gzip.compress(to_pprof(cpu_profile())),
                     headers={**auth(), "Content-Encoding": "gzip"})  # fmt: skip
    assert raw.status_code == 200, raw.text
    boundary = "b0undary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; "
            "filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + to_pprof(cpu_profile()) + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    multipart = httpx.post(url, params={**common, "name": "legacy.cpu{team=a,kind=form}",
                                        "format": "pprof"}, content=form, headers={
        **auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert multipart.status_code == 200, multipart.text
    assert top(agg, **{"label.kind": "folded"})["hot"]["self"] == 30
    assert top(agg, **{"label.kind": "lines"})["hot"]["self"] == 2
    assert top(agg, **{"label.kind": "pprof"})["hot"]["self"] == 450
    assert top(agg, **{"label.kind": "form"})["hot"]["self"] == 450
    tree = api(agg, "flamegraph", **{"from": "-1h", "label.kind": "folded"})
    assert tree["names"][tree["nodes"]["name"][1]] == "legacy"  # the app is the process
    bad = httpx.post(url, params={"name": "legacy.cpu{team}"}, content=b"a 1\n", headers=auth())
    assert bad.status_code == 400 and "key=value" in bad.json()["detail"]
    bad = httpx.post(url, params={"name": "legacy.cpu"}, content=b"a;b x\n", headers=auth())
    assert bad.status_code == 400 and "line 1" in bad.json()["detail"]


# --- round trips through REST and the CLI --------------------------------------------


def test_collapsed_round_trip_through_rest_and_cli(
    agg: AggregatorProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    want = fold(cpu_profile())
    rest = api(agg, "export", format="collapsed", **{"from": "-1h", "label.rt": "1"})
    assert parse_collapsed(rest.decode()) == want
    code, out, _ = run_cli(capsys, "export", "--api", agg.http, "--label", "rt=1")
    assert code == 0 and parse_collapsed(out) == want
    out_file = tmp_path / "cpu.folded"
    code, out, _ = run_cli(capsys, "export", "--api", agg.http, "--label", "rt=1",
                           "-o", str(out_file))  # fmt: skip
    assert code == 0 and "collapsed" in out
    assert parse_collapsed(out_file.read_text()) == want
    code, out, _ = run_cli(capsys, "export", "--api", agg.http, "--label", "rt=1",
                           "--type", "lock")  # fmt: skip
    assert parse_collapsed(out) == Counter({("app", "main", "hot"): 4_000_000})


def speedscope_weights(doc: dict[str, Any]) -> Counter[tuple[str, ...]]:
    frames = [f["name"] for f in doc["shared"]["frames"]]
    out: Counter[tuple[str, ...]] = Counter()
    for profile in doc["profiles"]:
        process = profile["name"].split(" (pid")[0]
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            out[(process, *(frames[i] for i in stack))] += weight
    return out


def test_speedscope_round_trip_through_rest_and_cli(
    agg: AggregatorProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    want = fold(cpu_profile())
    doc = api(agg, "export", format="speedscope", **{"from": "-1h", "label.rt": "1"})
    assert speedscope_weights(doc) == want
    out_file = tmp_path / "cpu.speedscope.json"
    code, out, err = run_cli(capsys, "export", "--api", agg.http, "--label", "rt=1",
                             "-o", str(out_file))  # fmt: skip
    assert code == 0, err
    assert "speedscope" in out  # picked from the file name
    assert speedscope_weights(json.loads(out_file.read_text())) == want


def test_pprof_round_trip_export_import_export(
    agg: AggregatorProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    exported = tmp_path / "rt.pb.gz"
    code, _, err = run_cli(capsys, "export", "--api", agg.http, "--label", "rt=1",
                           "-o", str(exported))  # fmt: skip
    assert code == 0, err
    [back] = from_pprof(exported.read_bytes())
    assert fold(back.profile) == fold(cpu_profile())
    assert back.profile.frequency_hz == 99
    code, out, err = run_cli(capsys, "import", "--api", agg.http, str(exported),
                             "--service", "copy", "--label", "copy=yes")  # fmt: skip
    assert code == 0, err
    assert "pprof:copy" in out and "520 samples" in out
    code, out, _ = run_cli(capsys, "export", "--api", agg.http, "--label", "copy=yes")
    assert parse_collapsed(out) == fold(cpu_profile())


def test_cli_errors_are_one_line(
    agg: AggregatorProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "export", "--api", "http://127.0.0.1:1")
    assert code == 1 and "cannot reach the aggregator's HTTP API" in err
    assert cli(["export", "--api", agg.http, "--token", "wrong"]) == 1
    assert "rejected the token" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "export", "--api", agg.http, "--format", "pprof")
    assert code == 2 and "-o FILE.pb.gz" in err
    code, _, err = run_cli(capsys, "import", "--api", agg.http, str(tmp_path / "missing.pb.gz"))
    assert code == 2 and "cannot read" in err
    junk = tmp_path / "junk.pb.gz"
    junk.write_bytes(b"junk")
    code, _, err = run_cli(capsys, "import", "--api", agg.http, str(junk))
    assert code == 1 and "answered 400: not a pprof profile" in err
    assert len(err.strip().splitlines()) == 1


@needs_interop
def test_oversized_bodies_are_413_and_counted(agg: AggregatorProcess) -> None:
    before = agg.metric('aperture_pushes_total{status="too_large"}')
    response = httpx.post(f"{agg.http}/api/v1/ingest/pprof", content=b"\0" * (17 << 20),
                          headers=auth(), timeout=30)  # fmt: skip
    assert response.status_code == 413
    assert "over the aggregator's limit" in response.json()["detail"]
    assert agg.metric('aperture_pushes_total{status="too_large"}') == before + 1


# --- windows outside retention, request limits, retries ------------------------------

SAMPLE_CPU = INTEROP / "pprof" / "sample.cpu"
LARGE_CPU = INTEROP / "pprof" / "large.cpu"
OLD_SAMPLE_CPU = (
    "the profile ends at 2017-09-29 20:58:01 UTC, before the store's 7-day retention, so it "
    "would be dropped at once: send recent profiles, or start the aggregator with a longer "
    "--retention, or import it with at=now (`aperture import --at now`), which moves its "
    "window to now"
)


@needs_interop
def test_an_old_pprof_is_refused_then_imported_at_now(agg: AggregatorProcess) -> None:
    """google/pprof's sample.cpu (2017): the old answer was "stored" and no query found it."""
    url = f"{agg.http}/api/v1/ingest/pprof"
    before = agg.metric('aperture_pushes_total{status="outside_retention"}')
    params = {"service": "old", "label.file": "sample.cpu"}
    refused = httpx.post(url, params=params, content=SAMPLE_CPU.read_bytes(), headers=auth())
    assert refused.status_code == 422 and refused.json()["detail"] == OLD_SAMPLE_CPU
    assert agg.metric('aperture_pushes_total{status="outside_retention"}') == before + 1
    assert "pprof:old" not in {a["agent_id"] for a in api(agg, "agents")}
    moved = httpx.post(url, params={**params, "at": "now"}, content=SAMPLE_CPU.read_bytes(),
                       headers=auth())  # fmt: skip
    assert moved.status_code == 200, moved.text
    [part] = moved.json()["profiles"]
    assert part["recorded_start_ns"] == 1_506_718_679_257_235_370
    assert time.time_ns() - part["end_ns"] < 60 * 10**9
    funcs = top(agg, **{"label.file": "sample.cpu"})
    # sample.cpu.top.txt: 1.76s in all, runtime.mapiternext 1.28s flat (10 ms samples)
    assert funcs[""]["total"] == 176 and funcs["runtime.mapiternext"]["self"] == 128


@needs_interop
def test_cli_import_of_old_files_says_why_and_at_now_keeps_pprofs_numbers(
    agg: AggregatorProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(capsys, "import", "--api", agg.http, str(SAMPLE_CPU))
    assert code == 1 and out == ""
    assert err.strip() == f"aperture: error: the aggregator at {agg.http} answered 422: " + (
        OLD_SAMPLE_CPU
    )
    code, out, err = run_cli(capsys, "import", "--api", agg.http, str(LARGE_CPU),
                             "--label", "file=large.cpu", "--at", "now")  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"stored {LARGE_CPU} as pprof:large.cpu (cpu: 24029 samples in 20430")
    assert "(moved by --at from its recorded 2022-10-18 15:39:57 UTC)" in out
    # The same request again is the same import: nothing stored twice.
    code, out, err = run_cli(capsys, "import", "--api", agg.http, str(LARGE_CPU),
                             "--label", "file=large.cpu", "--at", "now")  # fmt: skip
    assert code == 0 and out.startswith("already stored"), err
    exported = tmp_path / "large.pb.gz"
    code, _, err = run_cli(capsys, "export", "--api", agg.http, "--label", "file=large.cpu",
                           "-o", str(exported))  # fmt: skip
    assert code == 0, err
    [back] = from_pprof(exported.read_bytes())
    assert back.profile.total == 24029  # once, not twice
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (Debian golang-go): cannot compare with go tool pprof")
    env = {**os.environ, "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "cache"),
           "GOPATH": str(tmp_path / "gopath"), "GOPROXY": "off", "GOTOOLCHAIN": "local",
           "PPROF_TMPDIR": str(tmp_path / "pprof")}  # fmt: skip
    ran = subprocess.run([go, "tool", "pprof", "-top", "-nodecount=10", str(exported)],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr

    def rows(text: str) -> list[str]:
        return [line.split(maxsplit=5)[5] + " " + line.split()[0] for line in text.splitlines()
                if line.strip().endswith(("time.Now", "time.now", "main.next"))]  # fmt: skip

    want = (INTEROP / "pprof" / "large.cpu.top.txt").read_text()
    assert rows(ran.stdout) == rows(want) == ["time.Now 205.17s", "time.now 22.91s",
                                              "main.next 8.81s"]  # fmt: skip


def test_pyroscope_windows_outside_retention_are_refused(agg: AggregatorProcess) -> None:
    future = cpu_profile(NOW + 365 * 86_400 * 10**9)
    body = push_body("ahead", {"zone": "future"}, to_pprof(future)).SerializeToString()
    response = httpx.post(f"{agg.http}/push.v1.PusherService/Push", content=body,
                          headers={**auth(), "Content-Type": "application/proto"})  # fmt: skip
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "failed_precondition"
    assert "minutes ahead of this aggregator's clock" in error["message"]
    month_ago = NOW // 10**9 - 30 * 86_400
    legacy = httpx.post(f"{agg.http}/ingest", params={
        "name": "late.cpu{zone=past}", "from": str(month_ago - 10), "until": str(month_ago)},
        content=b"main;hot 5\n", headers=auth())  # fmt: skip
    assert legacy.status_code == 422 and "7-day retention" in legacy.json()["detail"]
    assert top(agg, **{"label.zone": "future"})[""]["total"] == 0
    assert top(agg, **{"label.zone": "past"}, **{"from": "-60d"})[""]["total"] == 0


def test_imports_past_the_limits_are_413_before_anything_is_built(
    agg: AggregatorProcess,
) -> None:
    before = agg.metric('aperture_pushes_total{status="too_large"}')
    body = distinct_pids_gzip(300_000)
    started = time.monotonic()
    response = httpx.post(f"{agg.http}/api/v1/ingest/pprof", params={"service": "pids"},
                          content=body, headers=auth(), timeout=60)  # fmt: skip
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "the request has more samples (stacks) than the 100,000 one import may have "
        "(100,001 or more): send shorter profiles, or fewer per request"
    )
    assert time.monotonic() - started < 10  # counted, not converted (3.3 s and +183 MiB before)
    request = push_pb2.PushRequest()
    for i in range(300):
        series = request.series.add()
        series.labels.add(name="service_name", value=f"s{i}")
        series.samples.add(raw_profile=to_pprof(cpu_profile()))
    push = httpx.post(f"{agg.http}/push.v1.PusherService/Push", content=request.SerializeToString(),
                      headers={**auth(), "Content-Type": "application/proto"})  # fmt: skip
    assert push.status_code == 413 and push.json()["code"] == "resource_exhausted"
    assert "more than 256 series" in push.json()["message"]
    assert agg.metric('aperture_pushes_total{status="too_large"}') == before + 2
    assert "pprof:pids" not in {a["agent_id"] for a in api(agg, "agents")}


@needs_interop
def test_a_go_contention_profile_is_stored_as_the_kind_it_is_said_to_be(
    agg: AggregatorProcess,
) -> None:
    """Go's mutex and block profiles share their sample types: refused unless told which."""
    data = (INTEROP / "pyroscope/pkg/og/convert/pprof/testdata/req_3.pprof").read_bytes()
    url = f"{agg.http}/api/v1/ingest/pprof"
    refused = httpx.post(url, content=data, headers=auth(),
                         params={"service": "gokind", "at": "now"})  # fmt: skip
    assert refused.status_code == 400 and "say which this is" in refused.json()["detail"]
    assert "pprof:gokind" not in {a["agent_id"] for a in api(agg, "agents")}
    stored = httpx.post(url, content=data, headers=auth(),
                        params={"service": "gokind", "at": "now", "kind": "block"})  # fmt: skip
    assert stored.status_code == 200, stored.text
    parts = {p["type"]: p for p in stored.json()["profiles"]}
    assert set(parts) == {"block_contentions", "block_delay"}
    assert (parts["block_delay"]["total"], parts["block_delay"]["from"]) == (
        22_674_240_703, "delay/nanoseconds")  # fmt: skip
    assert top(agg, type="block_contentions", **{"label.service": "gokind"})[""]["total"] == 43
    bad = httpx.post(url, content=data, headers=auth(), params={"service": "x", "kind": "heap"})
    assert bad.status_code == 422  # FastAPI's own refusal of a value outside mutex|block
