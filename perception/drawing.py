"""Annotated frames: boxes with "label id score" captions drawn on an RGB image, for viewers and
the node's optional annotated topic. Colours follow the object id, so a track keeps its colour.

The offline video pipeline draws straight on the decoder's 4:2:0 planes instead
(:func:`draw_objects_yuv420`): the encoder takes them as they are, which saves converting every frame
from RGB back to YUV, and every pixel away from the annotations keeps its decoded value.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from zlib import crc32

import cv2
import numpy as np

from perception.streams import LabeledBox

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_RGB = (0, 0, 0)


def _colour(key: str) -> tuple[int, int, int]:
    # A stable hash (unlike hash(), not salted per process), spread over saturated hues.
    hue = crc32(key.encode()) % 180
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    red, green, blue = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(red), int(green), int(blue)


def rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited-range Y, U (Cb), V (Cr) of an RGB colour: what FFmpeg's RGB to yuv420p uses."""
    red, green, blue = (channel / 255.0 for channel in rgb)
    y = 16.0 + 65.481 * red + 128.553 * green + 24.966 * blue
    u = 128.0 - 37.797 * red - 74.203 * green + 112.0 * blue
    v = 128.0 + 112.0 * red - 93.786 * green - 18.214 * blue
    return tuple(int(round(min(max(c, 0.0), 255.0))) for c in (y, u, v))


@dataclass(frozen=True)
class _Annotation:
    """Where one object's box and caption go, in pixels of the frame."""

    colour: tuple[int, int, int]  # RGB
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    caption: str
    caption_box: tuple[int, int, int, int]  # filled background, x0, y0, x1, y1
    text_origin: tuple[int, int]  # bottom-left of the text


def _layout(height: int, width: int, objects: Sequence[LabeledBox]) -> tuple[int, float, Iterator[_Annotation]]:
    """Line thickness, font scale and each object's annotation for a frame of this size."""
    thickness = max(1, round(min(height, width) / 320))
    scale = 0.4 * thickness

    def annotations() -> Iterator[_Annotation]:
        for obj in objects:
            x0, y0, x1, y1 = (int(round(float(v))) for v in obj.box_xyxy)
            parts = (obj.label, f"#{obj.object_id}" if obj.object_id else "", f"{obj.score:.2f}")
            caption = " ".join(part for part in parts if part)
            (text_width, text_height), baseline = cv2.getTextSize(caption, _FONT, scale, thickness)
            top = max(y0 - text_height - baseline, 0)
            yield _Annotation(_colour(obj.object_id or obj.label), (x0, y0, x1, y1), caption,
                              (x0, top, x0 + text_width, top + text_height + baseline), (x0, top + text_height))

    return thickness, scale, annotations()


def draw_objects(rgb: np.ndarray, objects: Sequence[LabeledBox]) -> np.ndarray:
    """Return a copy of the (H, W, 3) uint8 RGB frame with each object's xyxy pixel box and caption."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame; got {rgb.dtype} {rgb.shape}")
    canvas = np.ascontiguousarray(rgb).copy()
    thickness, scale, annotations = _layout(canvas.shape[0], canvas.shape[1], objects)
    for item in annotations:
        cv2.rectangle(canvas, item.box[:2], item.box[2:], item.colour, thickness)
        cv2.rectangle(canvas, item.caption_box[:2], item.caption_box[2:], item.colour, cv2.FILLED)
        cv2.putText(canvas, item.caption, item.text_origin, _FONT, scale, _TEXT_RGB, thickness, cv2.LINE_AA)
    return canvas


def yuv420_planes(planes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (H, W), U and V (H/2, W/2) planes of a packed yuv420p buffer (DecodedFrame.yuv420)."""
    flat = planes.reshape(-1)
    luma, chroma = height * width, (height // 2) * (width // 2)
    if flat.size != luma + 2 * chroma:
        raise ValueError(f"a {width}x{height} yuv420p frame has {luma + 2 * chroma} bytes; got {flat.size}")
    return (flat[:luma].reshape(height, width), flat[luma:luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma:].reshape(height // 2, width // 2))


def draw_objects_yuv420(planes: np.ndarray, height: int, width: int, objects: Sequence[LabeledBox]) -> np.ndarray:
    """:func:`draw_objects` on a packed yuv420p frame (even height and width); returns a drawn copy.

    Boxes and caption backgrounds go on all three planes (chroma at half the coordinates and half the
    line width, at least one chroma pixel); the black caption text only on Y, where its anti-aliasing
    shows, while the background's chroma stays under it.
    """
    if planes.dtype != np.uint8 or height % 2 or width % 2:
        raise ValueError(f"expected uint8 yuv420p with even sizes; got {planes.dtype} {width}x{height}")
    canvas = np.ascontiguousarray(planes).copy()
    y_plane, u_plane, v_plane = yuv420_planes(canvas, height, width)
    thickness, scale, annotations = _layout(height, width, objects)
    chroma_thickness = max(1, thickness // 2)
    text_luma = rgb_to_yuv(_TEXT_RGB)[0]
    for item in annotations:
        luma, blue_difference, red_difference = rgb_to_yuv(item.colour)
        cv2.rectangle(y_plane, item.box[:2], item.box[2:], luma, thickness)
        cv2.rectangle(y_plane, item.caption_box[:2], item.caption_box[2:], luma, cv2.FILLED)
        half_box = tuple(v // 2 for v in item.box)
        half_caption = tuple(v // 2 for v in item.caption_box)
        for plane, value in ((u_plane, blue_difference), (v_plane, red_difference)):
            cv2.rectangle(plane, half_box[:2], half_box[2:], value, chroma_thickness)
            cv2.rectangle(plane, half_caption[:2], half_caption[2:], value, cv2.FILLED)
        cv2.putText(y_plane, item.caption, item.text_origin, _FONT, scale, text_luma, thickness, cv2.LINE_AA)
    return canvas
