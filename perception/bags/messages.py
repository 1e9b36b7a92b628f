"""The messages `gdino bag` reads and writes, as rosbags objects: camera images in, ``vision_msgs/Detection2DArray``
and annotated rgb8 images out.

vision_msgs is registered with rosbags from the .msg files in ``perception/interfaces`` (upstream 4.x
layout, so the type hashes match); no ROS installation is needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from perception.camera_messages import (
    DEFAULT_MAX_PIXELS,
    MalformedImageError,
    compressed_to_rgb,
    image_to_rgb,
    rgb8_fields,
)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
VISION_MSGS_DIR = Path(__file__).resolve().parents[1] / "interfaces" / "vision_msgs" / "msg"


class UndeserializableMessageError(MalformedImageError):
    """The message's bytes are not a valid CDR message of its type (damaged on disk)."""

    kind = "undeserializable"


def bag_typestore():
    """ROS 2 Jazzy's message types plus vision_msgs (upstream 4.x layout) from our .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(VISION_MSGS_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def decode_image(typestore, msgtype: str, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS):
    """CDR bytes of an Image or CompressedImage -> (its header, (H, W, 3) uint8 RGB); raises
    MalformedImageError (``kind`` names the problem) for a message that cannot be used, images of more
    than ``max_pixels`` included."""
    from rosbags.serde import SerdeError

    try:
        msg = typestore.deserialize_cdr(data, msgtype)
    except SerdeError as error:
        raise UndeserializableMessageError(f"not a valid {msgtype} message: {error}") from error
    return msg.header, (compressed_to_rgb if msgtype == COMPRESSED_TYPE else image_to_rgb)(msg, max_pixels)


def detection_array(typestore, header, objects):
    """Objects of one frame (perception.streams.LabeledBox) -> rosbags ``Detection2DArray`` (the node's fields)."""
    types = typestore.types
    pose = types["geometry_msgs/msg/PoseWithCovariance"](
        pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=np.zeros(36, np.float64),
    )
    detections = []
    for obj in objects:
        x0, y0, x1, y1 = (float(v) for v in obj.box_xyxy)
        hypothesis = types["vision_msgs/msg/ObjectHypothesis"](class_id=obj.label, score=float(obj.score))
        centre = types["vision_msgs/msg/Pose2D"](
            position=types["vision_msgs/msg/Point2D"](x=(x0 + x1) / 2.0, y=(y0 + y1) / 2.0), theta=0.0
        )
        detections.append(types["vision_msgs/msg/Detection2D"](
            header=header,
            results=[types["vision_msgs/msg/ObjectHypothesisWithPose"](hypothesis=hypothesis, pose=pose)],
            bbox=types["vision_msgs/msg/BoundingBox2D"](center=centre, size_x=x1 - x0, size_y=y1 - y0),
            id=obj.object_id,
        ))
    return types[DETECTIONS_TYPE](header=header, detections=detections)


def rgb8_image(typestore, header, rgb: np.ndarray):
    """An (H, W, 3) uint8 RGB array -> rosbags ``sensor_msgs/Image`` rgb8 with ``header``."""
    return typestore.types[IMAGE_TYPE](header=header, **rgb8_fields(rgb))
