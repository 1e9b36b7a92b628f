"""Colour frames paired with depth images by stamp, for the cameras that have a registered depth topic.

Subscription callbacks add each depth image and CameraInfo (newest CameraInfo wins); the inference thread
asks for the partner of a colour frame after the model has run, so the depth has had the model's time to
arrive. The partner is the depth image whose stamp is nearest the colour stamp within ``slop`` seconds. When
none is there yet, the thread waits until one arrives, or a depth image stamped later than the colour stamp
plus ``slop`` arrives (the stamps of one topic only grow, so no partner can come), or ``wait`` seconds have
passed since the colour frame arrived. Pure Python and thread-safe.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from perception.camera_messages import stamp_seconds

KEEP = 30  # depth images remembered per camera: one second of a 30 Hz camera


class DepthPairing:
    def __init__(self, cameras: list[str], slop: float, wait: float) -> None:
        self.slop = slop
        self.wait = wait
        self._condition = threading.Condition()
        self._depths: dict[str, deque[tuple[float, Any]]] = {camera: deque(maxlen=KEEP) for camera in cameras}
        self._camera_infos: dict[str, Any] = {}

    def add_depth(self, camera: str, msg) -> None:
        stamp = stamp_seconds(msg.header)
        if stamp is None:  # cannot be paired with anything
            return
        with self._condition:
            self._depths[camera].append((stamp, msg))
            self._condition.notify_all()

    def set_camera_info(self, camera: str, msg) -> None:
        with self._condition:
            self._camera_infos[camera] = msg

    def camera_info(self, camera: str):
        """The newest CameraInfo of ``camera``'s colour image, or None before the first one."""
        with self._condition:
            return self._camera_infos.get(camera)

    def partner(self, camera: str, stamp: float | None, received: float) -> Any | None:
        """The depth image paired with ``camera``'s colour frame stamped ``stamp`` (seconds; None: no
        stamp) that arrived at ``received`` (time.monotonic()), or None when it has none."""
        if stamp is None:
            return None
        deadline = received + self.wait
        with self._condition:
            while True:
                depths = self._depths[camera]
                near = [(abs(depth_stamp - stamp), msg) for depth_stamp, msg in depths
                        if abs(depth_stamp - stamp) <= self.slop]
                if near:
                    return min(near, key=lambda item: item[0])[1]
                later = any(depth_stamp > stamp + self.slop for depth_stamp, _ in depths)
                remaining = deadline - time.monotonic()
                if later or remaining <= 0:
                    return None
                self._condition.wait(remaining)
