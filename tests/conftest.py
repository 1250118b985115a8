"""Shared fixtures: workloads compiled by the tests, and the BPF gate."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKLOADS = Path(__file__).parent / "workloads"
REPO = Path(__file__).parent.parent


def bpf_unavailable_reason() -> str | None:
    """Why real BPF tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "BPF tests need root (CAP_BPF + CAP_PERFMON); run `sudo make test`"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux), CO-RE programs cannot load"
    if not (REPO / "src/aperture/bpf/cpu.bpf.o").exists():
        return "BPF objects are not built: run `make bpf`"
    return None


@pytest.fixture(scope="session")
def bpf() -> None:
    reason = bpf_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def workloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the C workloads, built with frame pointers."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: the test workloads cannot be built")
    out = tmp_path_factory.mktemp("workloads")
    for source in WORKLOADS.glob("*.c"):
        subprocess.run(
            # -O0: every function, leaves included, sets up a frame pointer, so
            # frame-pointer unwinding sees each caller (gcc -O1 leaves leaves bare).
            [
                "gcc",
                "-O0",
                "-g",
                "-fno-omit-frame-pointer",
                "-pthread",
                "-o",
                str(out / source.stem),
                str(source),
            ],
            check=True,
        )
    return out


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by a test, killed at its end whatever happens."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


NOFP_FLAGS = ["-O2", "-g", "-fomit-frame-pointer", "-fasynchronous-unwind-tables"]


class NofpWorkloads:
    """The ``tests/workloads/nofp`` programs, built without frame pointers by each compiler."""

    def __init__(self, directory: Path, missing: dict[str, str]) -> None:
        self.dir = directory
        self._missing = missing  # compiler -> why its builds are absent

    def binary(self, stem: str, compiler: str) -> Path:
        """``<stem>-<compiler>``, or a skip saying why that compiler's build is missing."""
        if compiler in self._missing:
            pytest.skip(self._missing[compiler])
        return self.dir / f"{stem}-{compiler}"


@pytest.fixture(scope="session")
def nofp_workloads(tmp_path_factory: pytest.TempPathFactory) -> NofpWorkloads:
    """Every ``tests/workloads/nofp/*.c`` built twice, as ``<stem>-gcc`` and ``<stem>-clang``.

    Built the way distributions build: optimized, no frame pointers, ``.eh_frame`` tables
    for every instruction, so only table unwinding recovers their callers.
    """
    out = tmp_path_factory.mktemp("nofp")
    missing = {
        cc: f"{cc} is not installed: the {cc}-built no-frame-pointer workloads are missing"
        for cc in ("gcc", "clang")
        if shutil.which(cc) is None
    }
    if len(missing) == 2:
        pytest.skip("neither gcc nor clang is installed: the nofp workloads cannot be built")
    for cc in ("gcc", "clang"):
        if cc in missing:
            continue
        for source in sorted((WORKLOADS / "nofp").glob("*.c")):
            subprocess.run(
                [cc, *NOFP_FLAGS, "-o", str(out / f"{source.stem}-{cc}"), str(source)],
                check=True,
            )
    return NofpWorkloads(out, missing)
