"""Appearance of a box: a colour histogram of its middle, compared by the Bhattacharyya coefficient.

Colour tells apart people dressed differently and nothing else: re-identification uses it to refuse a
candidate whose colours differ, and to choose between two candidates only when their similarities differ
clearly (see :mod:`perception.tracking.reidentification`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

# A joint hue x saturation x value histogram of the middle of a box (its border is mostly background).
_BINS = (8, 4, 4)
_MARGIN = 0.15  # fraction of the box's width and height left out on each side


def appearance(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Normalised colour histogram of the middle of ``box`` (xyxy pixels) in ``frame`` ((H, W, 3) uint8
    RGB), or None when no pixel of it is inside the frame."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * _MARGIN, (y1 - y0) * _MARGIN
    height, width = frame.shape[:2]
    left, top = max(int(math.floor(x0 + dx)), 0), max(int(math.floor(y0 + dy)), 0)
    right, bottom = min(int(math.ceil(x1 - dx)), width), min(int(math.ceil(y1 - dy)), height)
    if right <= left or bottom <= top:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[top:bottom, left:right]), cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, list(_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return histogram / histogram.sum()


def appearance_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Bhattacharyya coefficient of two normalised histograms, in [0, 1]."""
    return float(np.sqrt(first * second).sum())


def best_similarity(looks: Iterable[np.ndarray | None], others: Iterable[np.ndarray | None]) -> float | None:
    """Highest similarity of any of ``looks`` with any of ``others`` (None entries skipped), None if no pair."""
    others = [other for other in others if other is not None]
    scores = [appearance_similarity(look, other) for look in looks if look is not None for other in others]
    return max(scores) if scores else None
