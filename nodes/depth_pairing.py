"""Colour frames paired with depth images by stamp, for the cameras that have a registered depth topic.

A colour frame's partner is the depth image whose stamp is nearest its own within ``slop`` seconds. The
frame may wait in its slot and then in the model for longer than recent depth images are kept (a slow model
on a CPU takes seconds), so its candidate is held with it: chosen among the recent depth images when the
frame arrives (``colour_arrived``, from the subscription callback), kept when the inference thread takes it
(``claim``, before the model runs), and improved by every depth image that arrives meanwhile. After the
model, ``partner`` returns the candidate, waiting while none is there yet until one arrives, or a depth image
stamped later than the colour stamp plus ``slop`` arrives (the stamps of one topic only grow, so no partner
can come), or ``wait`` seconds have passed since the colour frame arrived. Pure Python and thread-safe.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from perception.camera_messages import stamp_seconds

KEEP = 30  # recent depth images per camera, for colour frames still to arrive: one second at 30 Hz


@dataclass
class _Candidate:
    """The best depth image so far for the colour frame stamped ``stamp``."""

    stamp: float
    distance: float = math.inf
    depth: Any = None

    def offer(self, depth_stamp: float, msg, slop: float) -> None:
        distance = abs(depth_stamp - self.stamp)
        if distance <= slop and distance < self.distance:
            self.distance, self.depth = distance, msg


class DepthPairing:
    def __init__(self, cameras: list[str], slop: float, wait: float) -> None:
        self.cameras = frozenset(cameras)
        self.slop = slop
        self.wait = wait
        self._condition = threading.Condition()
        self._recent: dict[str, deque[tuple[float, Any]]] = {camera: deque(maxlen=KEEP) for camera in cameras}
        self._newest = dict.fromkeys(cameras, -math.inf)  # newest depth stamp per camera
        self._arrived: dict[str, _Candidate] = {}  # the newest colour frame of each camera, in its slot
        self._claimed: dict[str, _Candidate] = {}  # each camera's frame in the inference thread's pass
        self._camera_infos: dict[str, Any] = {}

    def add_depth(self, camera: str, msg) -> None:
        stamp = stamp_seconds(msg.header)
        if stamp is None:  # cannot be paired with anything
            return
        with self._condition:
            self._recent[camera].append((stamp, msg))
            self._newest[camera] = max(self._newest[camera], stamp)
            for candidates in (self._arrived, self._claimed):
                if camera in candidates:
                    candidates[camera].offer(stamp, msg, self.slop)
            self._condition.notify_all()

    def set_camera_info(self, camera: str, msg) -> None:
        with self._condition:
            self._camera_infos[camera] = msg

    def camera_info(self, camera: str):
        """The newest CameraInfo of ``camera``'s colour image, or None before the first one."""
        with self._condition:
            return self._camera_infos.get(camera)

    def colour_arrived(self, camera: str, stamp: float | None) -> None:
        """A colour frame stamped ``stamp`` (seconds; None: no stamp) waits in ``camera``'s slot."""
        if stamp is not None:
            with self._condition:
                self._arrived[camera] = self._candidate(camera, stamp)

    def claim(self, camera: str, stamp: float | None) -> None:
        """The inference thread took ``camera``'s frame stamped ``stamp``; keep its candidate until ``partner``."""
        if stamp is None:
            return
        with self._condition:
            arrived = self._arrived.get(camera)
            if arrived is not None and arrived.stamp == stamp:
                self._claimed[camera] = self._arrived.pop(camera)
            else:
                self._claimed[camera] = self._candidate(camera, stamp)

    def partner(self, camera: str, stamp: float | None, received: float) -> Any | None:
        """The depth image paired with ``camera``'s claimed colour frame stamped ``stamp`` that arrived at
        ``received`` (time.monotonic()), or None when it has none."""
        if stamp is None:
            return None
        deadline = received + self.wait
        with self._condition:
            candidate = self._claimed.get(camera)
            if candidate is None or candidate.stamp != stamp:
                candidate = self._claimed[camera] = self._candidate(camera, stamp)
            while candidate.depth is None and self._newest[camera] <= stamp + self.slop:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            del self._claimed[camera]
            return candidate.depth

    def _candidate(self, camera: str, stamp: float) -> _Candidate:
        """The best of the recent depth images for a colour stamp; call with the lock held."""
        candidate = _Candidate(stamp)
        for depth_stamp, msg in self._recent[camera]:
            candidate.offer(depth_stamp, msg, self.slop)
        return candidate
