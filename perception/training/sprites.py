"""Drawing of the generator's vocabulary: coloured shapes and simple objects as sprites with exact masks.

A sprite is drawn without anti-aliasing, so its mask says exactly which pixels it paints; it is cropped
tightly to that mask, so the box of a sprite pasted at (x, y) is (x, y, x + width, y + height) in
pixel-edge coordinates. The phrase of a sprite is "<colour> <kind>" ("red circle", "blue car").
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

# Hue in degrees of each colour word; neighbours are at least 25 degrees apart and the drawn hue
# varies by at most COLOUR_HUE_JITTER, so a colour word never names another's pixels.
COLOUR_HUES: dict[str, float] = {
    "red": 0.0,
    "orange": 28.0,
    "yellow": 56.0,
    "green": 125.0,
    "blue": 220.0,
    "purple": 280.0,
}
COLOUR_HUE_JITTER = 6.0
SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
OBJECTS = ("car", "house")
KINDS = SHAPES + OBJECTS
TEXTURES = ("solid", "gradient", "stripes", "checker", "dots")

# Fixed colours of the parts of objects that do not carry the phrase's colour (RGB).
_WHEEL = (25, 25, 28)
_WINDOW = (200, 215, 225)
_ROOF = (90, 60, 50)
_DOOR = (60, 40, 30)


@dataclass
class Sprite:
    """A drawn object, cropped tightly to its pixels.

    mask: (h, w) bool, True where the object paints a pixel.
    rgb: (h, w, 3) uint8 RGB; only meaningful where mask is True.
    """

    mask: np.ndarray
    rgb: np.ndarray


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T


def _outline(kind: str, rng: np.random.Generator) -> np.ndarray:
    """(K, 2) polygon of a shape around the origin (unit scale), y down, already rotated."""
    if kind == "circle":
        angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        return np.stack((np.cos(angles), np.sin(angles)), axis=1)
    if kind == "square":
        points = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 0.8
        return _rotate(points, rng.uniform(-20, 20))
    if kind == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return _rotate(np.stack((np.cos(angles), np.sin(angles)), axis=1), rng.uniform(-15, 15))
    if kind == "star":
        angles = np.deg2rad(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = np.stack((radii * np.cos(angles), radii * np.sin(angles)), axis=1)
        return _rotate(points, rng.uniform(-18, 18))
    if kind == "heart":
        t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return _rotate(np.stack((x, y), axis=1) / 17.0, rng.uniform(-15, 15))
    if kind == "cross":
        a = 0.3  # half the arm width
        points = np.array(
            [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]]
        )
        return _rotate(points, rng.uniform(-15, 15))
    raise ValueError(f"unknown shape {kind!r}; shapes are {', '.join(SHAPES)}")


def _fill(canvas: np.ndarray, polygon: np.ndarray) -> None:
    cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1, lineType=cv2.LINE_8)


def _texture_value(shape: tuple[int, int], value: float, rng: np.random.Generator) -> np.ndarray:
    """(h, w) brightness map of a coloured region: one of TEXTURES at brightness `value`."""
    height, width = shape
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    if texture == "solid":
        return np.full(shape, value)
    rows, cols = np.mgrid[0:height, 0:width].astype(float)
    angle = rng.uniform(0, np.pi)
    along = cols * np.cos(angle) + rows * np.sin(angle)
    if texture == "gradient":
        span = max(np.ptp(along), 1.0)
        return value * (0.65 + 0.35 * (along - along.min()) / span)
    period = rng.uniform(0.15, 0.3) * max(height, width)
    if texture == "stripes":
        return np.where((along // (period / 2)) % 2 == 0, value, 0.6 * value)
    if texture == "checker":
        across = -cols * np.sin(angle) + rows * np.cos(angle)
        parity = (along // (period / 2) + across // (period / 2)) % 2
        return np.where(parity == 0, value, 0.62 * value)
    # dots: a grid of round spots of a darker shade
    cell_x, cell_y = (cols % period) - period / 2, (rows % period) - period / 2
    return np.where(np.hypot(cell_x, cell_y) < period * 0.28, 0.6 * value, value)


def colour_rgb(colour: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A random shade of a colour word: (3,) RGB in [0, 1] at full brightness, and a brightness."""
    if colour not in COLOUR_HUES:
        raise ValueError(f"unknown colour {colour!r}; colours are {', '.join(COLOUR_HUES)}")
    hue = (COLOUR_HUES[colour] + rng.uniform(-COLOUR_HUE_JITTER, COLOUR_HUE_JITTER)) % 360.0
    saturation = rng.uniform(0.65, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue / 360.0, saturation, 1.0)), rng.uniform(0.75, 1.0)


def _paint(rgb: np.ndarray, region: np.ndarray, colour: str, rng: np.random.Generator) -> None:
    """Paint `region` (bool mask over rgb) in a textured shade of `colour`, in place."""
    base, value = colour_rgb(colour, rng)
    brightness = _texture_value(region.shape, value, rng)
    rgb[region] = np.clip(base[None, :] * brightness[region][:, None] * 255.0, 0, 255).astype(np.uint8)


def _draw_car(size: int, colour: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    width, height = size, int(round(size * 0.62))
    mask = np.zeros((height, width), np.uint8)
    rgb = np.zeros((height, width, 3), np.uint8)
    body = np.zeros_like(mask)
    _fill(body, np.array([[0, 0.38], [1, 0.38], [1, 0.8], [0, 0.8]]) * [width - 1, height - 1])
    _fill(body, np.array([[0.2, 0.38], [0.32, 0.02], [0.72, 0.02], [0.84, 0.38]]) * [width - 1, height - 1])
    _paint(rgb, body.astype(bool), colour, rng)
    window = np.zeros_like(mask)
    _fill(window, np.array([[0.27, 0.36], [0.36, 0.1], [0.68, 0.1], [0.77, 0.36]]) * [width - 1, height - 1])
    rgb[window.astype(bool)] = _WINDOW
    wheel_radius = int(round(0.19 * height))
    wheels = np.zeros_like(mask)
    for centre_x in (0.24, 0.76):
        centre = (int(round(centre_x * (width - 1))), height - 1 - wheel_radius)
        cv2.circle(wheels, centre, wheel_radius, 1, thickness=-1, lineType=cv2.LINE_8)
    rgb[wheels.astype(bool)] = _WHEEL
    return (body | wheels).astype(bool), rgb


def _draw_house(size: int, colour: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    width, height = int(round(size * 0.85)), size
    rgb = np.zeros((height, width, 3), np.uint8)
    walls = np.zeros((height, width), np.uint8)
    _fill(walls, np.array([[0.08, 0.42], [0.92, 0.42], [0.92, 1], [0.08, 1]]) * [width - 1, height - 1])
    _paint(rgb, walls.astype(bool), colour, rng)
    roof = np.zeros_like(walls)
    _fill(roof, np.array([[0, 0.45], [0.5, 0], [1, 0.45]]) * [width - 1, height - 1])
    rgb[roof.astype(bool)] = _ROOF
    door = np.zeros_like(walls)
    _fill(door, np.array([[0.42, 0.7], [0.58, 0.7], [0.58, 1], [0.42, 1]]) * [width - 1, height - 1])
    rgb[door.astype(bool)] = _DOOR
    return (walls | roof).astype(bool), rgb


def draw_sprite(kind: str, colour: str, size: int, rng: np.random.Generator) -> Sprite:
    """Draw one "<colour> <kind>" object about `size` pixels across (at least 8)."""
    if size < 8:
        raise ValueError(f"sprite size must be at least 8 pixels, got {size}")
    if kind == "car":
        mask, rgb = _draw_car(size, colour, rng)
    elif kind == "house":
        mask, rgb = _draw_house(size, colour, rng)
    else:
        outline = _outline(kind, rng)
        # Fit the rotated outline to the canvas: its longer side spans `size` pixels, nothing is cut off.
        outline = (outline - outline.min(axis=0)) / np.ptp(outline, axis=0).max() * (size - 1)
        canvas = np.zeros((size, size), np.uint8)
        _fill(canvas, outline)
        mask = canvas.astype(bool)
        rgb = np.zeros((size, size, 3), np.uint8)
        _paint(rgb, mask, colour, rng)
    rows, cols = np.nonzero(mask)
    crop = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    return Sprite(mask=mask[crop], rgb=rgb[crop])
