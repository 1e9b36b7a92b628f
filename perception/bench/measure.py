"""Timing and memory helpers shared by the benchmarks."""
from __future__ import annotations

import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable

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


def median_ms(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


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
