"""Newest-frame-wins hand-over from subscription callbacks to the inference thread.

One slot per camera: a new message replaces the one still waiting (which is counted as dropped), so
nothing queues without bound and the executor never waits for the model. The worker takes every
waiting frame at once, which is what batches cameras that wait together.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from perception.camera_messages import frame_seconds


@dataclass(frozen=True)
class PendingFrame:
    """A message as received: which camera, the message itself, the monotonic arrival time, and its index among
    the camera's messages (0, 1, ...; the dropped ones counted)."""

    camera: str
    msg: Any
    received: float
    index: int = 0

    @property
    def time(self) -> float:
        """When the frame was taken, in seconds (perception.camera_messages.frame_seconds): its stamp, or its
        arrival here."""
        return frame_seconds(self.msg.header, self.received)


class FrameSlots:
    """Thread-safe: ``put`` from callbacks, ``take_all`` from the one worker thread."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waiting: dict[str, PendingFrame] = {}
        self._delivered: dict[str, int] = {}  # messages put, per camera
        self._closed = False
        self._woken = False
        self.received = 0
        self.dropped = 0
        self.largest_backlog = 0

    def put(self, camera: str, msg: Any) -> bool:
        """Store the newest frame of ``camera``; returns True when it replaced a waiting one (a drop)."""
        with self._condition:
            replaced = camera in self._waiting
            index = self._delivered.get(camera, 0)
            self._delivered[camera] = index + 1
            self._waiting[camera] = PendingFrame(camera, msg, time.monotonic(), index)
            self.received += 1
            self.dropped += int(replaced)
            self.largest_backlog = max(self.largest_backlog, len(self._waiting))
            self._condition.notify()
        return replaced

    def take_all(self, timeout: float | None = None) -> list[PendingFrame]:
        """Wait until a frame waits, or ``wake``/``close`` is called, or the timeout passes; then take
        all waiting frames, oldest arrival first (possibly none)."""
        with self._condition:
            self._condition.wait_for(lambda: self._waiting or self._woken or self._closed, timeout=timeout)
            self._woken = False
            frames = sorted(self._waiting.values(), key=lambda frame: frame.received)
            self._waiting.clear()
            return frames

    def wake(self) -> None:
        """Make the pending or next ``take_all`` return even without frames (a setting changed)."""
        with self._condition:
            self._woken = True
            self._condition.notify_all()

    def close(self) -> None:
        """Wake the worker to stop; later ``take_all`` calls return at once. Frames still waiting are
        discarded and counted as dropped (the node is deactivating or shutting down)."""
        with self._condition:
            self._closed = True
            self.dropped += len(self._waiting)
            self._waiting.clear()
            self._condition.notify_all()

    def reopen(self) -> None:
        """Accept a worker again after ``close`` (the node is activated again); the counts go on."""
        with self._condition:
            self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed
