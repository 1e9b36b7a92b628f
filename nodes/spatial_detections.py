"""3D boxes of a frame's detections, for the cameras with a depth image registered to their colour image.

Glue between the node and :mod:`perception.spatial`: pair the colour frame with its depth image
(:mod:`nodes.depth_pairing`), convert the depth to metres, estimate each detection's 3D centre and size
from the depth inside its box, smooth it per track, and build the ``Detection3DArray``. A frame that gets
no 3D message is counted in health by reason (see :mod:`nodes.health`) and its reason logged once.
"""
from __future__ import annotations

from collections.abc import Sequence

from nodes.depth_pairing import DepthPairing
from nodes.detection_conversion import detection3d_array_msg
from nodes.frame_slots import PendingFrame
from nodes.health import Health
from perception.camera_messages import MalformedImageError, depth_image, stamp_seconds
from perception.spatial import CameraIntrinsics, TrackSmoother, depth_in_metres, estimate_object_3d
from perception.streams import LabeledBox


class SpatialDetections:
    def __init__(self, pairing: DepthPairing, smoothing: float, max_age: float, max_image_pixels: int,
                 health: Health, logger) -> None:
        self.pairing = pairing
        self._smoothing = smoothing
        self._max_age = max_age
        self._smoothers: dict[str, TrackSmoother] = {}
        self._max_image_pixels = max_image_pixels
        self._health = health
        self._logger = logger

    def claim(self, frame: PendingFrame) -> None:
        """The inference thread took ``frame`` (before the model runs): see DepthPairing.claim."""
        if frame.camera in self.pairing.cameras:
            self.pairing.claim(frame.camera, stamp_seconds(frame.msg.header))

    def message(self, frame: PendingFrame, image_size: tuple[int, int], objects: Sequence[LabeledBox]):
        """The Detection3DArray of ``frame`` (colour image of ``image_size`` (height, width)) whose 2D
        detections are ``objects``; None when it has none (counted)."""
        stamp = stamp_seconds(frame.msg.header)
        info = self.pairing.camera_info(frame.camera)
        if info is None:
            return self._without("no_camera_info", frame.camera, "no CameraInfo received yet")
        depth_msg = self.pairing.partner(frame.camera, stamp, frame.received)
        if depth_msg is None:
            return self._without("unpaired", frame.camera,
                                 f"no depth image within {self.pairing.slop} s of the colour stamp {stamp}")
        try:
            intrinsics = CameraIntrinsics.from_k(info.k, info.width, info.height)
            if (intrinsics.height, intrinsics.width) != tuple(image_size):
                raise ValueError(f"CameraInfo is {info.width}x{info.height} but the colour image is "
                                 f"{image_size[1]}x{image_size[0]}")
        except ValueError as error:
            return self._without("bad_camera_info", frame.camera, str(error))
        try:
            depth_m = depth_in_metres(depth_image(depth_msg, self._max_image_pixels), depth_msg.encoding)
            intrinsics.check_depth(depth_m)
        except (MalformedImageError, ValueError) as error:
            return self._without("bad_depth", frame.camera, str(error))
        smoother = self._smoothers.setdefault(frame.camera, TrackSmoother(self._smoothing, self._max_age))
        boxes = []
        for obj in objects:
            box = estimate_object_3d(depth_m, obj.box_xyxy, intrinsics)
            if box is None:  # too few valid depths in the box
                continue
            if obj.object_id:  # tracked: smoothed along its track
                box = smoother.update(int(obj.object_id), stamp, box)
            boxes.append((obj, box))
        self._health.record_3d()
        return detection3d_array_msg(frame.msg.header, boxes)

    def _without(self, reason: str, camera: str, detail: str) -> None:
        if self._health.record_without_3d(reason):
            self._logger.warning(f"a frame of {camera} is published in 2D only ({reason}): {detail}; "
                                 "further ones for this reason are only counted (without_3d in health)")
        return None
