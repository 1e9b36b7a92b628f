"""Objects of one frame -> ``vision_msgs/Detection2DArray`` (and ``Detection3DArray`` with their 3D boxes),
and the prompt's phrases -> ``LabelInfo``.

Pure functions over message classes; the node and the tests call them without a ROS graph.
"""
from __future__ import annotations

from collections.abc import Sequence

from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    Detection3D,
    Detection3DArray,
    LabelInfo,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
    VisionClass,
)

from perception.spatial import Object3D
from perception.streams import LabeledBox


def detection_array_msg(header, objects: Sequence[LabeledBox]) -> Detection2DArray:
    """One ``Detection2D`` per object, all stamped with the source image's ``header``.

    ``results[0].hypothesis``: class_id = the phrase, score = the detection score. ``bbox``: centre and
    size in pixels of the original image (axis-aligned, theta 0). ``id``: the track id ("" untracked).
    """
    array = Detection2DArray(header=header)
    for obj in objects:
        x0, y0, x1, y1 = (float(v) for v in obj.box_xyxy)
        detection = Detection2D(header=header, id=obj.object_id)
        detection.results.append(_hypothesis(obj))
        detection.bbox.center.position.x = (x0 + x1) / 2.0
        detection.bbox.center.position.y = (y0 + y1) / 2.0
        detection.bbox.size_x = x1 - x0
        detection.bbox.size_y = y1 - y0
        array.detections.append(detection)
    return array


def detection3d_array_msg(header, objects: Sequence[tuple[LabeledBox, Object3D]]) -> Detection3DArray:
    """One ``Detection3D`` per (object, its 3D box), stamped with the colour image's ``header`` (its frame is
    the camera's optical frame: x right, y down, z forward). ``id`` and ``results`` as in the 2D message;
    ``bbox``: centre and size in metres, axis-aligned in that frame (identity orientation)."""
    array = Detection3DArray(header=header)
    for obj, box in objects:
        detection = Detection3D(header=header, id=obj.object_id)
        detection.results.append(_hypothesis(obj))
        position, size = detection.bbox.center.position, detection.bbox.size
        position.x, position.y, position.z = (float(v) for v in box.center)
        size.x, size.y, size.z = (float(v) for v in box.size)
        array.detections.append(detection)
    return array


def _hypothesis(obj: LabeledBox) -> ObjectHypothesisWithPose:
    """class_id = the phrase, score = the detection score."""
    return ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=obj.label, score=float(obj.score)))


def label_info_msg(header, phrases: Sequence[str], threshold: float) -> LabelInfo:
    """The current prompt's phrases as a class map and the box threshold in use. VisionClass.class_name is
    the phrase, which is what the detections' ``hypothesis.class_id`` carries; VisionClass.class_id (a
    uint16) is the phrase's position in the prompt."""
    return LabelInfo(
        header=header,
        class_map=[VisionClass(class_id=index, class_name=phrase) for index, phrase in enumerate(phrases)],
        threshold=float(threshold),
    )
