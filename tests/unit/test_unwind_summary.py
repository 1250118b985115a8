"""How the agent reports its unwinding: the mode a machine can run and the summary lines."""

from __future__ import annotations

import pytest

from aperture.agent.collectors.cpu import effective_unwind_mode
from aperture.agent.run_totals import RunTotals
from aperture.agent.summary import format_cpu_summary
from aperture.errors import UserError
from aperture.model import EventType, Frame, Profile, Sample


def test_table_unwinding_is_x86_64_only_and_auto_falls_back_to_frame_pointers() -> None:
    assert effective_unwind_mode("auto", "x86_64") == "auto"
    assert effective_unwind_mode("dwarf", "x86_64") == "dwarf"
    assert effective_unwind_mode("auto", "aarch64") == "fp"
    assert effective_unwind_mode("fp", "aarch64") == "fp"
    with pytest.raises(UserError, match=r"x86_64 only.*--unwind fp"):
        effective_unwind_mode("dwarf", "aarch64")
    with pytest.raises(UserError, match="unknown --unwind"):
        effective_unwind_mode("lbr", "x86_64")


def _window(**counts: int) -> Profile:
    labels = {"unwind": "auto", "unwind_table_bytes": "2097152", "unwind_tables_loaded": "7"}
    labels.update({f"unwind_{k}": str(v) for k, v in counts.items()})
    stack = (Frame("_start", "app"), Frame("main", "app"))
    return Profile(EventType.CPU, "samples", [Sample(stack, 10)], 0, 10**9, 99, labels=labels)


def test_the_summary_sums_windows_and_states_shares_and_reasons() -> None:
    totals = RunTotals()
    w = {"table_walks": 90, "complete": 80, "truncated": 10, "fp_only": 10, "fp_frames": 3}
    totals.add("cpu", _window(**w, end_bottom=80, end_bad_frame=6, end_depth=4))
    totals.add("cpu", _window(**w, end_bottom=80, end_bad_frame=6, end_depth=4))
    text = format_cpu_summary(totals.modes["cpu"])
    assert (
        "user stacks (--unwind auto): 80.0% complete to their entry point, 10.0% stopped early, "
        "10.0% by frame pointers only (process not registered yet); 6 walks used a frame "
        "pointer" in text
    )
    assert "stopped early because: frame going nowhere 12, 128 frames reached 8" in text
    # Gauges are the latest state, not summed over windows.
    assert "unwind tables: 7 binaries, 2.0 MiB of kernel memory" in text


def test_the_summary_names_frame_pointer_mode_and_old_profiles() -> None:
    totals = RunTotals()
    window = _window()
    window.labels["unwind"] = "fp"
    totals.add("cpu", window)
    assert "user stacks: frame pointers (--unwind fp)" in format_cpu_summary(totals.modes["cpu"])


def test_the_summary_says_how_many_python_samples_show_python_functions() -> None:
    totals = RunTotals()
    window = _window(table_walks=10, complete=10)
    window.labels.update(
        python_samples="90", python_native_threads="8", python_incomplete="2", python_unmerged="1"
    )
    totals.add("cpu", window)
    text = format_cpu_summary(totals.modes["cpu"])
    assert (
        "Python: 90.0% of Python processes' samples show their Python functions; 8 from threads "
        "running no Python, 2 cut short, 1 stacks kept native" in text
    )


def test_top_functions_are_counted_per_function_and_module_as_the_api_counts_them() -> None:
    """Two libraries each with an ``init``: two functions, not one with their sum."""
    samples = [
        Sample((Frame("main", "app"), Frame("init", "liba.so")), 30),
        Sample((Frame("main", "app"), Frame("init", "libb.so")), 20),
        Sample((Frame("main", "app"), Frame("work", "app")), 40),
    ]
    totals = RunTotals()
    totals.add("cpu", Profile(EventType.CPU, "samples", samples, 0, 10**9, 99))
    text = format_cpu_summary(totals.modes["cpu"])
    top = text.split("top 10 functions by self samples:\n", 1)[1].splitlines()
    assert [line.split() for line in top] == [
        ["44.4%", "40", "work"],
        ["33.3%", "30", "init", "(liba.so)"],
        ["22.2%", "20", "init", "(libb.so)"],
    ]
