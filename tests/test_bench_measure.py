"""Benchmark timing helpers: two runs compared are called in turns, each one's memory measured on its own."""
from __future__ import annotations

import numpy as np

from perception.bench.detector import run
from perception.bench.measure import interleaved_latencies_ms


def test_runs_are_timed_in_turns_after_their_own_warm_ups():
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("ours", "reference")}
    times, peak_mib = interleaved_latencies_ms(runs, repeats=3, warmup=2)
    # Warm-ups one side after the other (memory per side), then the timed calls alternate.
    assert calls == ["ours", "ours", "reference", "reference"] + ["ours", "reference"] * 3
    assert {name: len(values) for name, values in times.items()} == {"ours": 3, "reference": 3}
    assert set(peak_mib) == {"ours", "reference"}


def test_each_run_s_memory_is_its_own():
    kept = []
    runs = {"small": lambda: kept.append(np.ones(1 << 20)),  # 8 MiB, kept: resident memory only grows
            "large": lambda: kept.append(np.ones(16 << 20))}  # 128 MiB
    _, peak_mib = interleaved_latencies_ms(runs, repeats=1, warmup=1)
    assert peak_mib["small"] < 64 <= peak_mib["large"]


def test_the_detector_benchmark_reports_both_sides_from_interleaved_calls():
    result = run(size="tiny", frame_sizes=((64, 96),), repeats=2, dtype="float32")
    figures = result["sizes"]["64x96"]["1"]
    assert figures["ours"]["calls"] == figures["reference"]["calls"] == 2
    assert figures["ratio"] == round(figures["ours"]["p50_ms"] / figures["reference"]["p50_ms"], 3)
