"""Timing and memory helpers shared by the benchmarks."""
from __future__ import annotations

import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


class PeakResident:
    """Samples this process's resident memory in a thread; ``peak - start`` is the growth during the block."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.start, self.peak = interval, 0, 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakResident":
        self.start = self.peak = resident_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def latencies_ms(run: Callable[[], object], repeats: int, warmup: int = 1,
                 device: torch.device | None = None) -> list[float]:
    """Wall time of each of ``repeats`` calls after ``warmup`` untimed ones. On a CUDA ``device`` each call
    is timed to the end of the GPU work it queued (synchronized before and after)."""
    synchronize = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        run()
        synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return times


def interleaved_latencies_ms(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                             device: torch.device | None = None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Wall times (ms) of ``repeats`` calls of each run, the runs called in turns (a, b, a, b, ...) so that a
    machine whose speed drifts (other tenants, turbo, a busy neighbour) slows each alike and their ratio holds;
    timed one after the other, four runs of one code on this project's shared 2-core machine gave ratios
    from 0.33 to 0.38. Memory is measured on each run's own untimed warm-up calls (at least one, run one side
    after the other), where interleaving would let one run reuse what the other freed.

    returns: (times per run name, peak memory growth in MiB per run name; see PeakMemory)."""
    synchronize = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    peak_mib = {}
    for name, run in runs.items():
        with PeakMemory(device or torch.device("cpu")) as memory:
            for _ in range(max(warmup, 1)):
                run()
        peak_mib[name] = memory.mib
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize()
            start = time.perf_counter()
            run()
            synchronize()
            times[name].append((time.perf_counter() - start) * 1000)
    return times, peak_mib


def median_ms(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    return statistics.median(latencies_ms(run, repeats, warmup))


def latency_summary(times_ms: list[float], frames_per_call: int) -> dict:
    """p50/p95 latency of one call and the frames per second of the median call."""
    p50, p95 = np.percentile(times_ms, [50, 95])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
            "fps": round(frames_per_call * 1000.0 / float(p50), 2), "calls": len(times_ms)}


class PeakMemory:
    """How far memory rose above its level at the start of the block, in MiB (activations and workspace; the
    weights, already there, are not counted): on CUDA the allocator's peak, on the CPU this process's
    resident memory (:class:`PeakResident`)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._resident = PeakResident().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = round((torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20, 1)
        else:
            self._resident.__exit__(*exc)
            self.mib = round((self._resident.peak - self._resident.start) / 2**20, 1)


class StageTimer:
    """Accumulates wall time spent inside named submodules through forward hooks."""

    def __init__(self, stages: dict[str, nn.Module]) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._handles = []
        for name, module in stages.items():
            self._handles.append(module.register_forward_pre_hook(self._enter(name)))
            self._handles.append(module.register_forward_hook(self._leave(name)))
        self._started: dict[str, float] = {}

    def _enter(self, name):
        def hook(module, inputs):
            self._started[name] = time.perf_counter()
        return hook

    def _leave(self, name):
        def hook(module, inputs, output):
            self.seconds[name] += time.perf_counter() - self._started.pop(name)
        return hook

    def reset(self) -> None:
        self.seconds.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
