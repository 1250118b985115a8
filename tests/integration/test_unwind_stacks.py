"""User stacks unwound from ``.eh_frame`` tables in BPF (DESIGN.md decision 10), end to end.

Binaries built the way distributions build them (optimized, no frame pointers), libc's
own frames, a signal handler, a thread, processes that live 200 ms, JIT code, and the
frame-pointer workloads that must not regress. Each test runs the real agent on the real
kernel. Stacks are root first: ``_start``, ``__libc_start_main``, ``__libc_start_call_main``,
``main``, ..., the leaf, then the kernel frames.

Where our stacks are checked against what a table unwinder can reach, perf
``--call-graph dwarf`` on the same process is the reference (see the python3.11 test).
"""

from __future__ import annotations

import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from aperture.agent.symbols.symbolizer import SIGNAL_FRAME
from aperture.formats.json_format import load_json
from aperture.model import Frame, FrameKind, Profile, Sample

if TYPE_CHECKING:
    from conftest import NofpWorkloads

pytestmark = pytest.mark.usefixtures("bpf")

COMPILERS = ["gcc", "clang"]
LIBC = "libc.so.6"
PYTHON = Path("/usr/bin/python3.11")  # Debian's: stripped, no frame pointers
PERF_RECORD = ["perf", "record", "-q", "--call-graph", "dwarf", "-F", "99"]
AGENT = [sys.executable, "-m", "aperture.agent.cli"]

# CPU-bound pure Python: a loop with calls, on the main thread or on a second thread.
PY_SCRIPT = """\
import sys, threading, time

def leaf(n):
    s = 0
    for i in range(n):
        s += i * i
    return s

def middle(n):
    return leaf(n) + leaf(n // 2)

def outer(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        middle(2000)

seconds = float(sys.argv[1])
if sys.argv[2] == "thread":
    worker = threading.Thread(target=outer, args=(seconds,), name="burner")
    worker.start()
    worker.join()
else:
    outer(seconds)
"""

# Each hot_js call runs ~20 ms: V8 compiles hot_js itself (on-stack replacement of its
# loop) and keeps it a frame of its own. With a short hot_js called in a hot loop,
# TurboFan inlines it into the top-level script and no frame is named hot_js any more.
JS_SCRIPT = """\
function hot_js(n) { let s = 0; for (let i = 0; i < n; i++) { s = (s * 31 + i) | 0; } return s; }
const end = Date.now() + 1000 * Number(process.argv[1]);
let acc = 0;
while (Date.now() < end) { acc ^= hot_js(20000000); }
if (acc === 42) console.log(acc);
"""


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENT, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def profile_of(pid: int, out: Path, unwind: str, duration: str = "6s") -> Profile:
    """Record ``pid`` at 499 Hz with ``--unwind unwind``; the agent must succeed."""
    result = run_agent(
        "--pid", str(pid), "-F", "499", "--duration", duration, "--unwind", unwind, "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    return load_json(out.read_text())


def user(sample: Sample) -> list[Frame]:
    """The user part of a stack, root first (kernel frames sit above it)."""
    return [f for f in sample.stack if f.kind is not FrameKind.KERNEL]


def names(sample: Sample) -> list[str]:
    return [f.name for f in user(sample)]


def leaf(sample: Sample) -> Frame | None:
    frames = user(sample)
    return frames[-1] if frames else None


def shown(samples: Sequence[Sample]) -> str:
    """The commonest of these stacks, root first, for assertion messages and -s output."""
    if not samples:
        return "(no samples)"
    top = max(samples, key=lambda s: s.value)
    return " -> ".join(f"{f.name} [{f.module}]" for f in user(top))


def share(samples: Sequence[Sample], ok: int) -> float:
    total = sum(s.value for s in samples)
    return ok / total if total else 0.0


def total(samples: Sequence[Sample]) -> int:
    return sum(s.value for s in samples)


def in_order(seq: list[str], wanted: Sequence[str]) -> bool:
    """``wanted`` occurs in ``seq`` in that order, not necessarily adjacent."""
    it = iter(seq)
    return all(any(name == w for name in it) for w in wanted)


def adjacent(seq: list[str], first: str, second: str) -> bool:
    return any(a == first and b == second for a, b in pairwise(seq))


def elf_entry(path: Path) -> int:
    """e_entry of an x86_64/arm64 ELF: the address of ``_start``."""
    with path.open("rb") as f:
        header = f.read(32)
    return int(struct.unpack_from("<Q", header, 24)[0])


def reaches_start(frames: list[Frame], entry: int | None = None) -> bool:
    """The root user frame is ``_start`` (by name, or by address in a stripped binary)."""
    if not frames:
        return False
    root = frames[0]
    if root.name == "_start":
        return True
    # _start is ~40 bytes; its call to __libc_start_main returns inside it.
    return entry is not None and entry <= root.offset < entry + 0x40


def share_of(stacks: list[list[str]], ok: Callable[[list[str]], bool]) -> float:
    return sum(1 for s in stacks if ok(s)) / len(stacks) if stacks else 0.0


def median_depth(depths: list[int]) -> float:
    return statistics.median(depths) if depths else 0.0


# --- the workloads are what they claim -------------------------------------------------


def test_nofp_workloads_have_no_frame_pointers(nofp_workloads: NofpWorkloads) -> None:
    if shutil.which("objdump") is None:
        pytest.skip("objdump is not installed (binutils): cannot inspect the prologues")
    for compiler in COMPILERS:
        binary = nofp_workloads.binary("unwind_ratio", compiler)
        for function in ("hot_a", "hot_b", "run"):
            text = subprocess.run(
                ["objdump", "-d", "--no-show-raw-insn", f"--disassemble={function}", str(binary)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            body = text.split(f"<{function}>:", 1)[1]
            assert "ret" in body, f"{function} not found in {binary.name}"
            assert "push   %rbp" not in body and "mov    %rsp,%rbp" not in body, (
                f"{binary.name}: {function} sets up a frame pointer:\n{body}"
            )


# --- optimized C without frame pointers --------------------------------------------------


@pytest.mark.parametrize("compiler", COMPILERS)
def test_dwarf_unwinds_optimized_code_without_frame_pointers(
    compiler: str,
    nofp_workloads: NofpWorkloads,
    tmp_path: Path,
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    binary = nofp_workloads.binary("unwind_ratio", compiler)
    proc = subprocess.Popen([str(binary), "60"])
    spawn.append(proc)
    profile = profile_of(proc.pid, tmp_path / "ratio.json", "dwarf")
    samples = [s for s in profile.samples if s.pid == proc.pid]
    by_leaf: dict[str, list[Sample]] = {}
    for s in samples:
        frame = leaf(s)
        by_leaf.setdefault(frame.name if frame else "", []).append(s)
    hot_a, hot_b = by_leaf.get("hot_a", []), by_leaf.get("hot_b", [])
    a, b = total(hot_a), total(hot_b)
    print(f"\n{binary.name} hot_a: {shown(hot_a)}")
    assert a + b > 600, f"too few samples: {a}+{b}"
    assert 0.70 <= a / (a + b) <= 0.80, f"hot_a share {a / (a + b):.3f}, expected 0.75±0.05"

    def run_calls_hot_a(s: Sample) -> bool:
        n = names(s)
        return in_order(n, ["main", "run", "hot_a"]) and adjacent(n, "run", "hot_a")

    chained = sum(s.value for s in hot_a if run_calls_hot_a(s))
    assert share(hot_a, chained) >= 0.95, (
        f"{chained}/{a} hot_a samples have main ... run -> hot_a; commonest: {shown(hot_a)}"
    )

    # libc's sort (glibc 2.36: qsort -> __qsort_r -> msort_with_tmp, recursive) between
    # two of our frames: tables of two objects in one stack.
    cmp = by_leaf.get("cmp_ints", [])
    print(f"{binary.name} cmp_ints: {shown(cmp)}")

    def sorted_by_libc(s: Sample) -> bool:
        frames = user(s)
        n = [f.name for f in frames]
        if "run_sort" not in n or not in_order(n, ["main", "run_sort", "cmp_ints"]):
            return False
        between = frames[n.index("run_sort") + 1 : -1]
        return bool(between) and all(
            f.module == LIBC and ("qsort" in f.name or "msort" in f.name) for f in between
        )

    under_sort = sum(s.value for s in cmp if sorted_by_libc(s))
    assert total(cmp) > 100, f"too few cmp_ints samples: {total(cmp)}"
    assert share(cmp, under_sort) >= 0.95, (
        f"{under_sort}/{total(cmp)} cmp_ints samples sit on libc's qsort frames under "
        f"run_sort under main; commonest: {shown(cmp)}"
    )

    # A libc leaf: memcpy resolves (IFUNC) to __memmove_<isa>_unaligned_erms. glibc's merge
    # sort calls memcpy too (3-6% of memcpy samples): those count with the sort, not here.
    copies = [
        s
        for s in samples
        if (f := leaf(s))
        and f.module == LIBC
        and ("memcpy" in f.name or "memmove" in f.name)
        and not any("msort" in n or "qsort" in n for n in names(s))
    ]
    print(f"{binary.name} memcpy: {shown(copies)}")
    under_copy = sum(
        s.value
        for s in copies
        if in_order(names(s), ["main", "copy_loop"]) and names(s)[-2:-1] == ["copy_loop"]
    )
    assert total(copies) > 100, f"too few memcpy samples: {total(copies)}"
    assert share(copies, under_copy) >= 0.95, (
        f"{under_copy}/{total(copies)} memcpy samples sit under copy_loop under main; "
        f"commonest: {shown(copies)}"
    )

    # All the way to the entry point: _start -> __libc_start_main -> __libc_start_call_main
    # -> main (perf shows __libc_start_main_impl, an alias of __libc_start_main).
    def full_root(s: Sample) -> bool:
        n = names(s)
        return (
            len(n) >= 4
            and n[0] == "_start"
            and "__libc_start_main" in n[1]
            and n[2] == "__libc_start_call_main"
            and n[3] == "main"
        )

    rooted = sum(s.value for s in samples if full_root(s))
    assert share(samples, rooted) >= 0.95, (
        f"{rooted}/{total(samples)} samples reach _start -> __libc_start_main -> "
        f"__libc_start_call_main -> main; commonest: {shown(samples)}"
    )


# --- CPython 3.11 from Debian, against perf ---------------------------------------------


def perf_stacks(data: Path) -> list[tuple[int, int, list[str]]]:
    """(pid, tid, symbols root first) per sample of ``perf script``."""
    text = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "pid,tid,ip,sym,dso", "--no-inline"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    stacks = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines or "/" not in lines[0].split()[0]:
            continue
        pid, tid = (int(x) for x in lines[0].split()[0].split("/"))
        # A frame line: "addr sym (dso)", leaf first.
        symbols = [line.split(None, 1)[1].rsplit(" (", 1)[0] for line in lines[1:]]
        stacks.append((pid, tid, symbols[::-1]))
    return stacks


def start_python(tmp_path: Path, mode: str, seconds: int) -> subprocess.Popen[bytes]:
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} is not installed (Debian's python3.11 package)")
    script = tmp_path / "burn.py"
    script.write_text(PY_SCRIPT)
    proc = subprocess.Popen([str(PYTHON), str(script), str(seconds), mode])
    time.sleep(0.3)  # past interpreter start-up, into the loop
    return proc


def test_python311_reaches_start_like_perf(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    if shutil.which("perf") is None:
        pytest.skip("perf is not installed (Debian linux-perf): no reference to compare with")
    proc = start_python(tmp_path, "main", 10)
    spawn.append(proc)
    data = tmp_path / "perf.data"
    perf = subprocess.Popen(
        [*PERF_RECORD, "-p", str(proc.pid), "-o", str(data), "--", "sleep", "6"],
        stderr=subprocess.PIPE,
    )
    spawn.append(perf)
    profile = profile_of(proc.pid, tmp_path / "py.json", "dwarf")
    _, perf_err = perf.communicate(timeout=60)

    entry = elf_entry(PYTHON)
    ours = [s for s in profile.samples if s.pid == proc.pid]
    ours_rooted = share(ours, sum(s.value for s in ours if reaches_start(user(s), entry)))
    ours_depth = median_depth([len(user(s)) for s in ours for _ in range(s.value)])
    ours_line = (
        f"aperture: {ours_rooted:.1%} of {total(ours)} samples reach _start, "
        f"median depth {ours_depth}"
    )

    perf_line = "perf: no data"
    perf_ok = perf.returncode == 0 and data.exists()
    if perf_ok:
        theirs = [symbols for pid, _, symbols in perf_stacks(data) if pid == proc.pid]
        perf_ok = bool(theirs)
        perf_rooted = share_of(theirs, lambda symbols: bool(symbols) and symbols[0] == "_start")
        perf_line = (
            f"perf --call-graph dwarf: {perf_rooted:.1%} of {len(theirs)} samples reach "
            f"_start, median depth {median_depth([len(t) for t in theirs])}"
        )
    print(f"\npython3.11 {ours_line}\npython3.11 {perf_line}\naperture: {shown(ours)}")
    assert ours_rooted >= 0.95, f"{ours_line}; {perf_line}; commonest: {shown(ours)}"
    if not perf_ok:
        pytest.skip(
            f"perf record failed ({perf_err.decode(errors='replace').strip()[:200]}); {ours_line}"
        )


def test_python_thread_reaches_thread_start(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc = start_python(tmp_path, "thread", 8)
    spawn.append(proc)
    profile = profile_of(proc.pid, tmp_path / "thread.json", "dwarf", duration="5s")
    thread = [s for s in profile.samples if s.pid == proc.pid and s.tid != proc.pid]
    print(f"\npython3.11 thread: {shown(thread)}")
    assert total(thread) > 500, f"too few samples on the thread: {total(thread)}"

    # glibc 2.36: clone3 (whose CFI ends the stack) -> start_thread -> Python's thread code.
    def from_thread_start(s: Sample) -> bool:
        frames = user(s)
        return (
            bool(frames)
            and frames[0].module == LIBC
            and ("clone" in frames[0].name or frames[0].name == "start_thread")
        )

    ok = sum(s.value for s in thread if from_thread_start(s))
    assert share(thread, ok) >= 0.95, (
        f"{ok}/{total(thread)} thread samples start at clone3/start_thread; "
        f"commonest: {shown(thread)}"
    )


# --- signal frames -------------------------------------------------------------------


@pytest.mark.parametrize("compiler", COMPILERS)
def test_unwinds_through_the_signal_frame(
    compiler: str,
    nofp_workloads: NofpWorkloads,
    tmp_path: Path,
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    binary = nofp_workloads.binary("signal_burn", compiler)
    proc = subprocess.Popen([str(binary), "30"])
    spawn.append(proc)
    profile = profile_of(proc.pid, tmp_path / "signal.json", "dwarf", duration="4s")
    samples = [s for s in profile.samples if s.pid == proc.pid]
    in_handler = [s for s in samples if "burn_in_handler" in names(s)]
    print(f"\n{binary.name}: {shown(in_handler)}")
    assert share(samples, total(in_handler)) > 0.5, "the workload should burn in its handler"

    def through_signal_frame(s: Sample) -> bool:
        frames = user(s)
        n = [f.name for f in frames]
        if "on_signal" not in n or n.index("on_signal") > n.index("burn_in_handler"):
            return False
        rootward = frames[: n.index("on_signal")][::-1]  # nearest caller first
        # The kernel's signal frame returns into glibc's __restore_rt, which the walker
        # marks (perf shows "[unknown]": __restore_rt has no symbol size, and the return
        # address is its first byte, so ip - 1 falls before it).
        return (
            len(rootward) > 1
            and rootward[0].name == SIGNAL_FRAME
            and rootward[0].module == "libc.so.6"
            and rootward[1].name in ("interrupted_here", "wait_loop")
            and "main" in [f.name for f in rootward]
        )

    ok = sum(s.value for s in in_handler if through_signal_frame(s))
    assert share(in_handler, ok) >= 0.90, (
        f"{ok}/{total(in_handler)} handler samples continue through the signal frame into "
        f"interrupted_here/wait_loop and main; commonest: {shown(in_handler)}"
    )


# --- processes that live 200 ms ------------------------------------------------------


def recording_system_wide(
    out: Path, spawn: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """An agent recording the whole host for 8 s into ``out``, once it has started."""
    agent = subprocess.Popen(
        [*AGENT, "-F", "499", "--duration", "8s", "--unwind", "auto", "-q", "-o", str(out)],
        stderr=subprocess.PIPE,
    )
    spawn.append(agent)
    time.sleep(3)  # the agent prints nothing when it starts recording
    assert agent.poll() is None, agent.stderr.read().decode() if agent.stderr else ""
    return agent


def test_short_lived_processes_unwind(
    nofp_workloads: NofpWorkloads, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    binary = nofp_workloads.binary("short_lived", "gcc")
    out = tmp_path / "system.json"
    agent = recording_system_wide(out, spawn)
    pids = set()
    for _ in range(5):
        # 400 ms each: the first few ms, until the agent has read the new process's
        # maps, are walked by frame pointers (short stacks, cut at [unknown])
        proc = subprocess.Popen([str(binary), "400"])
        spawn.append(proc)
        pids.add(proc.pid)
        time.sleep(0.3)
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err.decode()
    profile = load_json(out.read_text())
    mine = [s for s in profile.samples if s.pid in pids]
    print(f"\n{binary.name}: {shown(mine)}")
    assert {s.comm for s in mine} == {"short_lived-gcc"}  # 15 characters: fits comm
    assert len({s.pid for s in mine}) == 5, "every run should be sampled"
    ok = sum(
        s.value
        for s in mine
        if in_order(names(s), ["main", "brief_work", "brief_spin"])
        and adjacent(names(s), "main", "brief_work")
        and adjacent(names(s), "brief_work", "brief_spin")
    )
    assert total(mine) > 200, f"too few samples: {total(mine)}"  # ~1,000 alone
    # short stacks while a process is new, never a wrong caller
    wrong = [
        names(s)
        for s in mine
        if "brief_spin" in names(s)
        and (i := names(s).index("brief_spin")) > 0
        and names(s)[i - 1] not in ("brief_work", "[unknown]")
    ]
    assert not wrong, f"brief_spin under a wrong caller: {wrong[:3]}"
    assert share(mine, ok) >= 0.80, (
        f"{ok}/{total(mine)} samples have main -> brief_work -> brief_spin; "
        f"commonest: {shown(mine)}"
    )


def test_new_processes_unwind_from_their_first_sample(
    nofp_workloads: NofpWorkloads, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """Once a binary's table is loaded, a process running it unwinds before the agent has
    registered it: the walker's own programs register it at exec, from the kernel's list
    of its mappings. 10 ms processes, mostly gone before their announcement is handled,
    keep every frame."""
    binary = nofp_workloads.binary("short_lived", "gcc")
    out = tmp_path / "system.json"
    agent = recording_system_wide(out, spawn)
    subprocess.run([str(binary), "300"], check=True)  # its tables get built
    time.sleep(1)
    pids = set()
    for _ in range(40):
        proc = subprocess.Popen([str(binary), "10"])
        proc.wait()
        pids.add(proc.pid)
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err.decode()
    mine = [s for s in load_json(out.read_text()).samples if s.pid in pids]
    assert len({s.pid for s in mine}) >= 30, "most runs should be sampled"
    # the samples in the workload's own code, not in the loader or exit path
    mine = [s for s in mine if any(f.name == "brief_spin" for f in s.stack)]
    ok = sum(s.value for s in mine if in_order(names(s), ["main", "brief_work", "brief_spin"]))
    assert share(mine, ok) >= 0.95, (
        f"{ok}/{total(mine)} samples have main -> brief_work -> brief_spin; "
        f"commonest: {shown(mine)}"
    )


# --- frame pointers still work -----------------------------------------------------------


@pytest.mark.parametrize("unwind", ["auto", "fp"])
def test_frame_pointer_workload_still_unwinds(
    unwind: str, workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc = subprocess.Popen([str(workloads / "cpu_ratio"), "60"])
    spawn.append(proc)
    profile = profile_of(proc.pid, tmp_path / "fp.json", unwind, duration="4s")
    hot_a = [s for s in profile.samples if "hot_a" in names(s)]
    ok = sum(s.value for s in hot_a if "main,run_cycle,hot_a,spin" in ",".join(names(s)))
    assert total(hot_a) > 300, f"too few hot_a samples: {total(hot_a)}"
    assert share(hot_a, ok) > 0.9, (
        f"--unwind {unwind}: {ok}/{total(hot_a)} hot_a samples have main -> run_cycle -> "
        f"hot_a -> spin; commonest: {shown(hot_a)}"
    )


# --- JIT code: frame pointers where there are no tables ------------------------------


def test_jit_frames_continue_into_the_runtime(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: no JIT to profile")
    proc = subprocess.Popen([node, "--perf-basic-prof", "-e", JS_SCRIPT, "10"], cwd=tmp_path)
    spawn.append(proc)
    time.sleep(0.5)
    try:
        profile = profile_of(proc.pid, tmp_path / "node.json", "auto")
    finally:
        proc.kill()
        Path(f"/tmp/perf-{proc.pid}.map").unlink(missing_ok=True)
    jit = [
        s
        for s in profile.samples
        if s.pid == proc.pid
        and any(f.kind is FrameKind.JIT and "hot_js" in f.name for f in user(s))
    ]
    print(f"\nnode: {shown(jit)}")
    assert total(jit) > 300, f"too few samples in hot_js: {total(jit)}"

    # JIT code has no tables: V8 keeps frame pointers, which auto follows until it is back
    # in node's own code, which has tables. perf -g reaches node::Start in every hot_js
    # sample; node's main is a 5-byte jmp to node::Start, so main itself is never a frame.
    def into_runtime(s: Sample) -> bool:
        frames = user(s)
        at = next(i for i, f in enumerate(frames) if f.kind is FrameKind.JIT and "hot_js" in f.name)
        return any(f.module == "node" and f.name.startswith("node::Start") for f in frames[:at])

    ok = sum(s.value for s in jit if into_runtime(s))
    assert share(jit, ok) >= 0.90, (
        f"{ok}/{total(jit)} hot_js samples continue rootward to node::Start; "
        f"commonest: {shown(jit)}"
    )


def test_helpers_read_root_first_stacks() -> None:
    """The stack-shape helpers above on a hand-made stack, so a failure is the agent's."""
    root = ("_start", "__libc_start_main_impl", "__libc_start_call_main", "main", "run")
    frames = (
        *(Frame(n, "x") for n in root),
        Frame("hot_a", "x"),
        Frame("do_idle", "[kernel]", FrameKind.KERNEL),
    )
    sample = Sample(stack=frames, value=1)
    assert names(sample)[-1] == "hot_a" and leaf(sample) == Frame("hot_a", "x")
    assert in_order(names(sample), ["main", "run", "hot_a"])
    assert not in_order(names(sample), ["run", "main"])
    assert adjacent(names(sample), "run", "hot_a") and not adjacent(names(sample), "main", "hot_a")
    assert reaches_start(user(sample))
    assert reaches_start([Frame("python3.11+0x627bd5", "python3.11", offset=0x627BD5)], 0x627BB0)
