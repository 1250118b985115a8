"""The bounded unwind numbers of a batch and their sums (aperture.unwind_stats)."""

from __future__ import annotations

from aperture.unwind_stats import MAX_KEYS, UnwindTotals, reported, unwind_stats


def test_numeric_unwind_labels_are_kept_and_the_rest_dropped() -> None:
    mode, stats = unwind_stats({
        "cpu.unwind": "auto", "cpu.unwind_complete": "97", "cpu.unwind_table_bytes": "4096",
        "cpu.idle_samples": "5",  # not about unwinding
        "cpu.unwind_bogus": "12a", "cpu.unwind_neg": "-1", "cpu.unwind_big": str(2**64),
        "cpu.unwind_max": str(2**64 - 1), "cpu.unwind_" + "x" * 60: "1",
        "cpu.unwind_Upper": "1", "cpu.unwind_digits": "١٢",  # Arabic-Indic digits: no
    })  # fmt: skip
    assert mode == "auto"
    assert stats == {"cpu.unwind_complete": 97, "cpu.unwind_table_bytes": 4096,
                     "cpu.unwind_max": 2**64 - 1}  # fmt: skip


def test_at_most_64_keys_the_first_in_sorted_order() -> None:
    labels = {f"cpu.unwind_k{i:03d}": "1" for i in range(100)}
    _, stats = unwind_stats(labels)
    assert len(stats) == MAX_KEYS
    assert sorted(stats) == [f"cpu.unwind_k{i:03d}" for i in range(MAX_KEYS)]


def test_an_odd_mode_is_other_and_no_keys_is_not_reported() -> None:
    assert unwind_stats({"cpu.unwind": "Auto; DROP"})[0] == "other"
    mode, stats = unwind_stats({"cpu.idle_samples": "3"})
    assert (mode, stats) == ("", {}) and not reported(mode, stats)


def test_totals_sum_counts_take_gauge_maxima_and_keep_new_end_reasons() -> None:
    t = UnwindTotals()
    for walks, complete, table_bytes in ((10, 9, 500), (20, 15, 300)):
        stats = {"cpu.unwind_table_walks": walks, "cpu.unwind_complete": complete,
                 "cpu.unwind_truncated": walks - complete, "cpu.unwind_end_bottom": complete,
                 "cpu.unwind_end_new_reason": walks - complete,
                 "cpu.unwind_table_bytes": table_bytes}  # fmt: skip
        t.add("auto", 1, True, stats, stats, {"cpu.unwind_tables_evicted": 2, "lock.x": 9})
    t.add("", 3, False, {}, {}, {"cpu.unwind_tables_evicted": 100})  # an old agent's batches
    out = t.answer()
    assert (out["batches"], out["batches_with_unwind_data"], out["modes"]) == (5, 2, {"auto": 2})
    assert out["samples"] == {"table_walks": 30, "complete": 24, "truncated": 6, "fp_only": 0,
                              "fp_frames": 0}  # fmt: skip
    assert out["ends"]["bottom"] == 24 and out["ends"]["new_reason"] == 6
    assert out["tables"] == {"bytes_max": 500, "loaded_max": 0}
    assert out["losses"]["unwind_tables_evicted"] == 4


def test_no_reporting_batch_gives_null_sections_not_zeros() -> None:
    t = UnwindTotals()
    t.add("", 2, False, {}, {}, {})
    nothing = {"samples": None, "ends": None, "tables": None, "losses": None}
    assert t.answer() == {"batches": 2, "batches_with_unwind_data": 0, "modes": {}, **nothing}
