"""Backgrounds of generated scenes: muted solid, gradient, cloudy, striped or checked fields with clutter.

Backgrounds keep saturation at most 0.35 while objects have at least 0.65 (see sprites.colour_rgb),
so colour words always name objects, never the ground. The clutter (thin lines and faint blobs) gives
edges that are not objects, so a detector cannot just find every edge. "solid" stays plain: one colour.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

BACKGROUND_KINDS = ("solid", "gradient", "clouds", "stripes", "checker")


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """(3,) RGB in [0, 255] of low saturation."""
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0, 0.35), rng.uniform(0.25, 0.9)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255.0


def _field(height: int, width: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """(H, W) blend weight in [0, 1] between the background's two colours."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = cols * np.cos(angle) + rows * np.sin(angle)
    if kind == "solid":
        return np.zeros((height, width), np.float32)
    if kind == "gradient":
        return (along - along.min()) / max(np.ptp(along), 1.0)
    if kind == "clouds":
        coarse = rng.uniform(0, 1, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.float32)
        return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    period = rng.uniform(0.05, 0.2) * max(height, width)
    if kind == "stripes":
        return ((along // (period / 2)) % 2).astype(np.float32)
    if kind == "checker":
        across = -cols * np.sin(angle) + rows * np.cos(angle)
        return ((along // (period / 2) + across // (period / 2)) % 2).astype(np.float32)
    raise ValueError(f"unknown background kind {kind!r}; kinds are {', '.join(BACKGROUND_KINDS)}")


def _add_clutter(image: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a few thin lines and faint blobs in muted colours, in place."""
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(0, 6))):
        start = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(image, start, end, _muted_colour(rng).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(3, max(4, width // 12))), int(rng.integers(3, max(4, height // 12))))
        cv2.ellipse(image, centre, axes, rng.uniform(0, 180), 0, 360, _muted_colour(rng).tolist(), -1, cv2.LINE_AA)


def draw_background(height: int, width: int, kinds: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """A (height, width, 3) uint8 RGB background of one of `kinds`; all but "solid" get clutter."""
    kind = kinds[int(rng.integers(len(kinds)))]
    weight = _field(height, width, kind, rng)[..., None]
    first, second = _muted_colour(rng), _muted_colour(rng)
    image = np.ascontiguousarray(((1 - weight) * first + weight * second).clip(0, 255).astype(np.uint8))
    if kind != "solid":
        _add_clutter(image, rng)
    return image
