"""Counters and latencies of the detector node, reported on its logger and on /diagnostics.

Pure Python and thread-safe: the inference thread records, a timer reads ``snapshot()``.
Latencies are kept over a bounded window of recent batches so a long run uses constant memory.
"""
from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

WINDOW = 1000  # recent batches/frames the latency statistics cover


@dataclass(frozen=True)
class BatchRecord:
    """One pass of the inference thread.

    frames: images that went through the model; busy_seconds: from taking the frames to the last
    publish (decode, model, tracking, conversion, publish); model_seconds: the model's share of it.
    end_to_end_seconds: per published frame, publish time minus the image stamp (stamp-less frames
    are left out).
    """

    frames: int
    busy_seconds: float
    model_seconds: float
    end_to_end_seconds: tuple[float, ...]


def _percentile_ms(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1e3) if len(values) else float("nan")


class Health:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processed = 0
        self.batches = 0
        self.largest_batch = 0
        self.busy_seconds = 0.0
        self.model_seconds = 0.0
        self.malformed: Counter[str] = Counter()
        self.skipped_without_prompt = 0
        self._model_window: deque[float] = deque(maxlen=WINDOW)
        self._end_to_end_window: deque[float] = deque(maxlen=WINDOW)

    def record_batch(self, record: BatchRecord) -> None:
        with self._lock:
            self.processed += record.frames
            self.batches += 1
            self.largest_batch = max(self.largest_batch, record.frames)
            self.busy_seconds += record.busy_seconds
            self.model_seconds += record.model_seconds
            self._model_window.append(record.model_seconds)
            self._end_to_end_window.extend(record.end_to_end_seconds)

    def record_malformed(self, kind: str) -> bool:
        """Count a skipped message; True the first time this kind is seen (log it then)."""
        with self._lock:
            self.malformed[kind] += 1
            return self.malformed[kind] == 1

    def record_skipped_without_prompt(self, frames: int) -> None:
        with self._lock:
            self.skipped_without_prompt += frames

    def snapshot(self, received: int, dropped: int, largest_backlog: int) -> dict[str, float]:
        """All figures as one flat mapping; ``overhead`` is (busy - model) / model time, a fraction."""
        with self._lock:
            return {
                "received": received,
                "processed": self.processed,
                "dropped": dropped,
                "malformed": sum(self.malformed.values()),
                "skipped_without_prompt": self.skipped_without_prompt,
                "batches": self.batches,
                "largest_batch": self.largest_batch,
                "largest_backlog": largest_backlog,
                "model_ms_p50": _percentile_ms(self._model_window, 50),
                "model_ms_p95": _percentile_ms(self._model_window, 95),
                "end_to_end_ms_p50": _percentile_ms(self._end_to_end_window, 50),
                "end_to_end_ms_p95": _percentile_ms(self._end_to_end_window, 95),
                "busy_seconds": self.busy_seconds,
                "model_seconds": self.model_seconds,
                "overhead": (self.busy_seconds - self.model_seconds) / self.model_seconds
                if self.model_seconds > 0
                else float("nan"),
            }


def summary_line(figures: dict[str, float]) -> str:
    """The periodic log line."""
    return (
        f"frames received {figures['received']}, processed {figures['processed']}, dropped {figures['dropped']}, "
        f"malformed {figures['malformed']}; batches {figures['batches']} (largest {figures['largest_batch']}); "
        f"model p50 {figures['model_ms_p50']:.1f} ms, end-to-end p50 {figures['end_to_end_ms_p50']:.1f} ms "
        f"p95 {figures['end_to_end_ms_p95']:.1f} ms; overhead {figures['overhead']:.1%}"
    )
