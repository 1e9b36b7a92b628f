"""Counters and latencies of the detector node, reported on its logger and on /diagnostics.

Pure Python and thread-safe: the inference thread records, a timer reads ``snapshot()``.
Latencies are kept over a bounded window of recent batches so a long run uses constant memory.

Every frame a camera delivers ends in one count: ``processed`` (its detections were published),
``dropped`` (a newer frame of its camera replaced it while it waited), ``malformed`` (its message could not
be decoded, by kind), ``refused`` (the detector refused the image, by reason), ``skipped_without_prompt``,
or ``lost_frames`` (an unexpected error failed its whole batch, counted in ``failed_batches``). A processed
frame of a camera with a depth topic also ends in one count: ``with_3d`` (its Detection3DArray was
published) or ``without_3d`` by reason (``unpaired``: no depth image within the slop of its stamp;
``no_camera_info``; ``bad_depth``; ``bad_camera_info``), published in 2D only.

Stamps and clocks: end-to-end latency is the node's clock at publish minus the image stamp, which means
something only when the camera stamps with the node's clock. A frame whose stamp, compared with the node's
clock when the frame arrived, lies more than ``STAMP_AHEAD_LIMIT`` seconds in the future or more than
``STAMP_BEHIND_LIMIT`` seconds in the past (a driver stamping with its own monotonic clock or sim time, a
replayed bag) is not a latency sample: it is counted per camera in ``unsynced_stamps``. A zero stamp
means "no stamp" and is neither.
"""
from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

WINDOW = 1000  # recent batches/frames the latency statistics cover
# Transport from camera to node takes milliseconds; seconds of difference mean another clock. Ahead: room
# for clocks of two machines that NTP keeps close. Behind: room for a slow link or a loaded machine.
STAMP_AHEAD_LIMIT = 1.0
STAMP_BEHIND_LIMIT = 10.0


@dataclass(frozen=True)
class BatchRecord:
    """One pass of the inference thread.

    frames: images answered (their detections published); busy_seconds: from taking the frames to the
    last publish (decode, model, tracking, conversion, publish); model_seconds: the model's share of it.
    end_to_end_seconds: per answered frame, publish time minus the image stamp (frames without a stamp
    or with an unsynced one, see :func:`stamp_in_sync`, are left out).
    """

    frames: int
    busy_seconds: float
    model_seconds: float
    end_to_end_seconds: tuple[float, ...]


def stamp_in_sync(arrival_delay: float) -> bool:
    """Whether a stamp comes from the node's clock: ``arrival_delay`` is the node's clock when the frame
    arrived minus its stamp, in seconds (negative: the stamp lies in the future)."""
    return -STAMP_AHEAD_LIMIT <= arrival_delay <= STAMP_BEHIND_LIMIT


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
        self.refused: Counter[str] = Counter()
        self.unsynced_stamps: Counter[str] = Counter()
        self.without_3d: Counter[str] = Counter()
        self.with_3d = 0
        self.skipped_without_prompt = 0
        self.failed_batches = 0
        self.lost_frames = 0
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
        return self._count(self.malformed, kind)

    def record_refused(self, reason: str) -> bool:
        """Count a frame the detector refused; True the first time this reason is seen (log it then)."""
        return self._count(self.refused, reason)

    def record_unsynced_stamp(self, camera: str) -> bool:
        """Count a frame whose stamp is not from the node's clock; True the first time for ``camera``."""
        return self._count(self.unsynced_stamps, camera)

    def record_3d(self) -> None:
        with self._lock:
            self.with_3d += 1

    def record_without_3d(self, reason: str) -> bool:
        """Count a frame published in 2D only; True the first time this reason is seen (log it then)."""
        return self._count(self.without_3d, reason)

    def _count(self, counter: Counter[str], key: str) -> bool:
        with self._lock:
            counter[key] += 1
            return counter[key] == 1

    def record_skipped_without_prompt(self, frames: int) -> None:
        with self._lock:
            self.skipped_without_prompt += frames

    def record_failed_batch(self, lost_frames: int, answered_frames: int) -> int:
        """Count a pass that an unexpected error ended: ``lost_frames`` were neither answered nor counted
        otherwise, ``answered_frames`` were published before the error. Returns the failures so far."""
        with self._lock:
            self.failed_batches += 1
            self.lost_frames += lost_frames
            self.processed += answered_frames
            return self.failed_batches

    def snapshot(self, received: int, dropped: int, largest_backlog: int) -> dict[str, float]:
        """All figures as one flat mapping; ``overhead`` is (busy - model) / model time, a fraction.
        Counts by kind, reason and camera follow as ``malformed[kind]``, ``refused[reason]`` and
        ``unsynced_stamps[camera]``."""
        with self._lock:
            figures = {
                "received": received,
                "processed": self.processed,
                "dropped": dropped,
                "malformed": sum(self.malformed.values()),
                "refused": sum(self.refused.values()),
                "skipped_without_prompt": self.skipped_without_prompt,
                "failed_batches": self.failed_batches,
                "lost_frames": self.lost_frames,
                "unsynced_stamps": sum(self.unsynced_stamps.values()),
                "with_3d": self.with_3d,
                "without_3d": sum(self.without_3d.values()),
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
            for name, counter in (("malformed", self.malformed), ("refused", self.refused),
                                  ("unsynced_stamps", self.unsynced_stamps), ("without_3d", self.without_3d)):
                figures.update({f"{name}[{key}]": count for key, count in sorted(counter.items())})
            return figures


def summary_line(figures: dict[str, float]) -> str:
    """The periodic log line."""
    return (
        f"frames received {figures['received']}, processed {figures['processed']}, dropped {figures['dropped']}, "
        f"malformed {figures['malformed']}, refused {figures['refused']}, lost {figures['lost_frames']} "
        f"(failed batches {figures['failed_batches']}); batches {figures['batches']} "
        f"(largest {figures['largest_batch']}); model p50 {figures['model_ms_p50']:.1f} ms, end-to-end p50 "
        f"{figures['end_to_end_ms_p50']:.1f} ms p95 {figures['end_to_end_ms_p95']:.1f} ms "
        f"(unsynced stamps {figures['unsynced_stamps']}); overhead {figures['overhead']:.1%}"
    )
