"""What the tracker accepts with each update: the frame, its boxes and its time.

Frames are (H, W, 3) uint8 RGB. A grayscale frame ((H, W) or (H, W, 1) uint8) is accepted and widened to
three equal channels, so colour histograms then compare brightness only. Anything else (float frames,
other channel counts) is refused with a message, as are detections whose boxes lie outside the frame
(detections made on another image size than the frame passed with them).

Time: each update happens at a time in seconds, the frame's ``timestamp`` when given, else the previous
update's time plus one frame at the configured ``frame_rate`` (every update call is one frame of the
stream, whether or not the detector ran on it).
"""
from __future__ import annotations

import math

import numpy as np


def checked_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` as (H, W, 3) uint8 RGB: grayscale is widened to three channels, anything else refused."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"tracking frame must be a numpy array (H, W, 3) uint8 RGB; got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"tracking frame must be uint8 RGB (0..255); got {frame.dtype}: convert it first, e.g. "
                         "(frame * 255).round().astype(np.uint8) for floats in [0, 1]")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"tracking frame must be (H, W, 3) RGB or (H, W) grayscale; got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"tracking frame is empty: shape {frame.shape}")
    return frame


def check_boxes_in_frame(boxes: np.ndarray, frame_size: tuple[int, int]) -> None:
    """Refuse (N, 4) xyxy ``boxes`` whose centre lies outside a frame of ``frame_size`` (height, width): no
    detector reports an object centred outside its image, so they were made on another image size."""
    if not len(boxes):
        return
    height, width = frame_size
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    outside = (centres[:, 0] < 0) | (centres[:, 0] > width) | (centres[:, 1] < 0) | (centres[:, 1] > height)
    if outside.any():
        x, y = centres[int(np.argmax(outside))]
        raise ValueError(f"tracking: a detection box is centred at ({x:.0f}, {y:.0f}), outside the {width}x{height} "
                         "frame passed with it: pass the frame the detections were made on")


def stream_time(last: float | None, stamp: float | None, frame_rate: float) -> float:
    """The time to hand a stream's tracker for its next frame, so that it never goes backwards: the frame's
    stamp in seconds, but not earlier than ``last`` (a camera clock that steps back, a replayed recording, a
    damaged video's timestamps: time stands still until the stamps catch up); without a stamp (None, or
    not finite), one frame at ``frame_rate`` after ``last``. ``last``: the previous frame's, None at first."""
    if stamp is None or not math.isfinite(stamp):
        return 0.0 if last is None else last + 1.0 / frame_rate
    return float(stamp) if last is None else max(float(stamp), last)


class Clock:
    """The time of each update in seconds: its timestamp, or one frame at ``frame_rate`` after the last."""

    def __init__(self, frame_rate: float) -> None:
        self.frame_rate = frame_rate  # of the updates without a timestamp
        self._with_timestamps: bool | None = None
        self.now: float | None = None  # time of the current update, None before the first
        self.step: float | None = None  # seconds since the update before it, None before the second

    def tick(self, timestamp: float | None) -> float:
        previous = self.now
        self.now = self.checked(timestamp)
        self._with_timestamps = timestamp is not None
        self.step = None if previous is None else self.now - previous
        return self.now

    def checked(self, timestamp: float | None) -> float:
        """The time of a next update at ``timestamp`` (None: one frame after the last), or a ValueError saying why
        it cannot be; changes nothing."""
        given = timestamp is not None
        if self._with_timestamps is not None and given != self._with_timestamps:
            raise ValueError("tracking: pass a timestamp with every update of a stream or with none "
                             f"({'earlier updates had one' if self._with_timestamps else 'earlier updates had none'})")
        if not given:
            return 0.0 if self.now is None else self.now + 1.0 / self.frame_rate
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise ValueError(f"tracking timestamp must be a finite number of seconds; got {timestamp}")
        if self.now is not None and timestamp < self.now:
            raise ValueError(f"tracking timestamps must not go backwards: {timestamp} s after {self.now} s "
                             "(one ObjectTracker per stream)")
        return timestamp


def check_boxes_finite(boxes: np.ndarray) -> None:
    if not np.isfinite(boxes).all():
        raise ValueError("tracking: detection boxes contain NaN or infinite values")
