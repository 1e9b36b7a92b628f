"""Annotated frames: boxes with "label id score" captions drawn on an RGB image, for viewers and
the node's optional annotated topic. Colours follow the object id, so a track keeps its colour."""
from __future__ import annotations

from collections.abc import Sequence
from zlib import crc32

import cv2
import numpy as np

from perception.streams import LabeledBox

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colour(key: str) -> tuple[int, int, int]:
    # A stable hash (unlike hash(), not salted per process), spread over saturated hues.
    hue = crc32(key.encode()) % 180
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    red, green, blue = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(red), int(green), int(blue)


def draw_objects(rgb: np.ndarray, objects: Sequence[LabeledBox]) -> np.ndarray:
    """Return a copy of the (H, W, 3) uint8 RGB frame with each object's xyxy pixel box and caption."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame; got {rgb.dtype} {rgb.shape}")
    canvas = np.ascontiguousarray(rgb).copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 320))
    for obj in objects:
        x0, y0, x1, y1 = (int(round(float(v))) for v in obj.box_xyxy)
        colour = _colour(obj.object_id or obj.label)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        caption = " ".join(part for part in (obj.label, f"#{obj.object_id}" if obj.object_id else "", f"{obj.score:.2f}") if part)
        (width, height), baseline = cv2.getTextSize(caption, _FONT, 0.4 * thickness, thickness)
        top = max(y0 - height - baseline, 0)
        cv2.rectangle(canvas, (x0, top), (x0 + width, top + height + baseline), colour, cv2.FILLED)
        cv2.putText(canvas, caption, (x0, top + height), _FONT, 0.4 * thickness, (0, 0, 0), thickness, cv2.LINE_AA)
    return canvas
