"""Per-track exponential smoothing of 3D estimates, so a tracked object's position does not jitter."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.spatial.estimate import Object3D


@dataclass
class _TrackState:
    stamp_s: float
    center: np.ndarray  # (3,) metres
    size: np.ndarray  # (3,) metres


class TrackSmoother:
    """Smooths each track's centre and size: smoothed = alpha * new + (1 - alpha) * previous.

    alpha: weight of the newest estimate, in (0, 1]; 1 turns smoothing off.
    max_age_s: a track not updated for longer than this is forgotten; its next estimate starts afresh.
    max_jump_m: a new centre farther than this from the smoothed one restarts the track from the new
        estimate (the track now follows another object, or the depth was wrong before), instead of
        dragging the average across the gap over several frames.
    A stamp earlier than the track's last one (a replayed bag) also restarts the track.
    """

    def __init__(self, alpha: float = 0.5, max_age_s: float = 2.0, max_jump_m: float = 0.5) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not (math.isfinite(max_age_s) and max_age_s > 0):
            raise ValueError(f"max_age_s must be a positive number of seconds, got {max_age_s}")
        if not (math.isfinite(max_jump_m) and max_jump_m > 0):
            raise ValueError(f"max_jump_m must be a positive number of metres, got {max_jump_m}")
        self.alpha = alpha
        self.max_age_s = max_age_s
        self.max_jump_m = max_jump_m
        self._tracks: dict[int, _TrackState] = {}

    def __len__(self) -> int:
        """How many tracks are remembered."""
        return len(self._tracks)

    def update(self, track_id: int, stamp_s: float, obj: Object3D) -> Object3D:
        """Fold `obj`, the estimate of `track_id` at `stamp_s` (seconds), into its track; returns the
        smoothed estimate (its depth_pixels are the new estimate's)."""
        if not math.isfinite(stamp_s):
            raise ValueError(f"stamp_s must be finite, got {stamp_s}")
        self._forget_older_than(stamp_s - self.max_age_s)
        state = self._tracks.get(track_id)
        restart = (
            state is None
            or stamp_s < state.stamp_s
            or float(np.linalg.norm(obj.center - state.center)) > self.max_jump_m
        )
        if restart:
            center, size = obj.center, obj.size
        else:
            center = self.alpha * obj.center + (1 - self.alpha) * state.center
            size = self.alpha * obj.size + (1 - self.alpha) * state.size
        self._tracks[track_id] = _TrackState(stamp_s, center, size)
        return Object3D(center=center, size=size, depth_pixels=obj.depth_pixels)

    def reset(self) -> None:
        """Forget every track."""
        self._tracks.clear()

    def _forget_older_than(self, oldest_s: float) -> None:
        for track_id in [key for key, state in self._tracks.items() if state.stamp_s < oldest_s]:
            del self._tracks[track_id]
