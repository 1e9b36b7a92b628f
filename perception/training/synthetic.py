"""Procedural scenes and videos with exact ground truth, each a deterministic function of a seed.

A scene is a muted background (backgrounds.py) with 1 to N coloured shapes and objects (sprites.py)
pasted on top in random order, partly occluding each other, then blurred and noised like a camera.
Boxes are xyxy in pixel-edge coordinates of the image: an object covering pixel columns 10..19 has
x0 = 10 and x1 = 20. A box is the full (amodal) extent of its object; `visibility` says which fraction
of the object's pixels is not covered by objects in front of it.

Videos move the objects of one scene over a fixed background at constant speed, bouncing off the
image borders, with fresh camera noise in each frame; each object keeps its track id (1, 2, ...).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from perception.training.backgrounds import BACKGROUND_KINDS, draw_background
from perception.training.sprites import COLOUR_HUES, KINDS, Sprite, draw_sprite

logger = logging.getLogger(__name__)

# Tries to place one object before it is left out of the scene (its place kept hiding others too much).
PLACEMENT_ATTEMPTS = 30
MIN_IMAGE_SIDE = 64


@dataclass(frozen=True)
class SceneConfig:
    """What a generated scene may contain."""

    min_objects: int = 1
    max_objects: int = 6
    # Object size (its longer side) as a fraction of the image's shorter side, drawn uniformly.
    # 0.15 keeps objects at 48 px or more in 320 px images, enough for a small detector.
    min_object_size: float = 0.15
    max_object_size: float = 0.4
    # Every object keeps at least this fraction of its pixels visible (placements that would hide
    # more of an object are redrawn; in videos this holds for the first frame only).
    min_visibility: float = 0.6
    colours: tuple[str, ...] = tuple(COLOUR_HUES)
    kinds: tuple[str, ...] = KINDS
    backgrounds: tuple[str, ...] = BACKGROUND_KINDS
    # Standard deviation of Gaussian pixel noise, drawn uniformly in [0, max_noise_std] (0..255 scale).
    max_noise_std: float = 8.0
    blur_probability: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 0 <= min_objects <= max_objects, got {self.min_objects} and {self.max_objects}")
        if not 0 < self.min_object_size <= self.max_object_size <= 1:
            raise ValueError(
                "need 0 < min_object_size <= max_object_size <= 1 (fractions of the shorter image side), "
                f"got {self.min_object_size} and {self.max_object_size}"
            )
        if not 0 <= self.min_visibility <= 1:
            raise ValueError(f"min_visibility must be in [0, 1], got {self.min_visibility}")
        for name, chosen, allowed in (
            ("colours", self.colours, tuple(COLOUR_HUES)),
            ("kinds", self.kinds, KINDS),
            ("backgrounds", self.backgrounds, BACKGROUND_KINDS),
        ):
            unknown = [item for item in chosen if item not in allowed]
            if not chosen or unknown:
                raise ValueError(f"{name} must be a non-empty subset of {allowed}, got {chosen}")
        if self.max_noise_std < 0:
            raise ValueError(f"max_noise_std must be >= 0, got {self.max_noise_std}")
        if not 0 <= self.blur_probability <= 1:
            raise ValueError(f"blur_probability must be in [0, 1], got {self.blur_probability}")

    @property
    def phrases(self) -> tuple[str, ...]:
        """Every phrase a scene may contain, "<colour> <kind>"."""
        return tuple(f"{colour} {kind}" for colour in self.colours for kind in self.kinds)


@dataclass(frozen=True)
class VideoConfig:
    """A video's objects (as in a scene) and how fast they move."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    min_speed: float = 1.0  # pixels per frame
    max_speed: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_speed <= self.max_speed:
            raise ValueError(f"need 0 <= min_speed <= max_speed, got {self.min_speed} and {self.max_speed}")


class SceneObject(NamedTuple):
    phrase: str
    box: tuple[float, float, float, float]  # xyxy, pixel edges of the image
    visibility: float  # fraction of the object's pixels not hidden by objects in front, in [0, 1]


class TrackedObject(NamedTuple):
    track_id: int  # 1, 2, ... fixed for the whole video
    phrase: str
    box: tuple[float, float, float, float]  # xyxy, pixel edges of the frame
    visibility: float


@dataclass
class Scene:
    """image: (H, W, 3) uint8 RGB; objects in drawing order (later ones in front)."""

    image: np.ndarray
    objects: list[SceneObject]

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) float32 xyxy pixel boxes of the objects."""
        return np.array([item.box for item in self.objects], np.float32).reshape(-1, 4)

    @property
    def labels(self) -> list[str]:
        return [item.phrase for item in self.objects]

    @property
    def visibility(self) -> np.ndarray:
        """(N,) float32: the fraction of each object that is drawn."""
        return np.array([item.visibility for item in self.objects], np.float32)


def sprite_window(
    shape: tuple[int, int], x: int, y: int, frame: tuple[int, int]
) -> tuple[slice, slice, slice, slice] | None:
    """The part of a sprite of `shape` (h, w) pasted with its top-left corner at (x, y) that lies inside a
    frame of `frame` (height, width): (frame rows, frame columns, sprite rows, sprite columns), or None
    when none of it does. Corners may be negative or past the frame (objects entering or leaving)."""
    height, width = shape
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + height, frame[0]), min(x + width, frame[1])
    if bottom <= top or right <= left:
        return None
    return slice(top, bottom), slice(left, right), slice(top - y, bottom - y), slice(left - x, right - x)


class _Layer:
    """Which object owns each pixel, to measure occlusion as sprites are pasted front-most."""

    def __init__(self, height: int, width: int) -> None:
        self.owner = np.full((height, width), -1, np.int32)
        self.areas: list[int] = []

    def visible_counts(self) -> np.ndarray:
        return np.bincount(self.owner[self.owner >= 0], minlength=len(self.areas))

    def hides_too_much(self, sprite: Sprite, x: int, y: int, min_visibility: float) -> bool:
        height, width = sprite.mask.shape
        covered = self.owner[y : y + height, x : x + width][sprite.mask]
        lost = np.bincount(covered[covered >= 0], minlength=len(self.areas))
        remaining = self.visible_counts() - lost
        return bool(np.any(remaining < min_visibility * np.asarray(self.areas)))

    def paste(self, sprite: Sprite, x: int, y: int) -> None:
        """Mark the sprite's pixels inside the frame as its own; its area counts every pixel, so the part
        outside the frame counts as hidden."""
        window = sprite_window(sprite.mask.shape, x, y, self.owner.shape)
        if window is not None:
            rows, cols, sprite_rows, sprite_cols = window
            self.owner[rows, cols][sprite.mask[sprite_rows, sprite_cols]] = len(self.areas)
        self.areas.append(int(sprite.mask.sum()))

    def visibilities(self) -> np.ndarray:
        return self.visible_counts() / np.maximum(np.asarray(self.areas, float), 1.0)


def check_request(seed: int, size: tuple[int, int]) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if len(size) != 2 or min(size) < MIN_IMAGE_SIDE:
        raise ValueError(f"size must be (height, width) with both at least {MIN_IMAGE_SIDE}, got {size}")


def place_objects(
    size: tuple[int, int], config: SceneConfig, rng: np.random.Generator
) -> tuple[list[str], list[Sprite], list[tuple[int, int]]]:
    """Choose and place the objects of a scene: phrases, sprites and top-left corners, back to front."""
    height, width = size
    layer = _Layer(height, width)
    phrases, sprites, corners = [], [], []
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        colour = config.colours[int(rng.integers(len(config.colours)))]
        kind = config.kinds[int(rng.integers(len(config.kinds)))]
        side = rng.uniform(config.min_object_size, config.max_object_size) * min(height, width)
        sprite = draw_sprite(kind, colour, int(round(side)), rng)
        for _ in range(PLACEMENT_ATTEMPTS):
            x = int(rng.integers(0, width - sprite.mask.shape[1] + 1))
            y = int(rng.integers(0, height - sprite.mask.shape[0] + 1))
            if not layer.hides_too_much(sprite, x, y, config.min_visibility):
                layer.paste(sprite, x, y)
                phrases.append(f"{colour} {kind}")
                sprites.append(sprite)
                corners.append((x, y))
                break
    return phrases, sprites, corners


def compose(
    background: np.ndarray, sprites: Sequence[Sprite], corners: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Paste sprites back to front, each cut to the frame: (H, W, 3) uint8 image and (N,) visible fraction
    of each sprite (pixels outside the frame count as hidden)."""
    image = background.copy()
    layer = _Layer(*background.shape[:2])
    for sprite, (x, y) in zip(sprites, corners):
        window = sprite_window(sprite.mask.shape, x, y, background.shape[:2])
        if window is not None:
            rows, cols, sprite_rows, sprite_cols = window
            mask = sprite.mask[sprite_rows, sprite_cols]
            image[rows, cols][mask] = sprite.rgb[sprite_rows, sprite_cols][mask]
        layer.paste(sprite, x, y)
    return image, layer.visibilities()


def camera_effects(image: np.ndarray, blur: bool, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """Slight lens blur and sensor noise."""
    if blur:
        image = cv2.GaussianBlur(image, (3, 3), 0.8)
    noisy = image.astype(np.float32) + rng.normal(0.0, noise_std, size=image.shape).astype(np.float32)
    return noisy.round().clip(0, 255).astype(np.uint8)


def _box(sprite: Sprite, corner: tuple[float, float]) -> tuple[float, float, float, float]:
    height, width = sprite.mask.shape
    return (float(corner[0]), float(corner[1]), float(corner[0] + width), float(corner[1] + height))


def generate_scene(seed: int, size: tuple[int, int] = (320, 320), config: SceneConfig = SceneConfig()) -> Scene:
    """The scene of `seed` at `size` (height, width); equal arguments give equal scenes."""
    check_request(seed, size)
    rng = np.random.default_rng(seed)
    background = draw_background(size[0], size[1], config.backgrounds, rng)
    phrases, sprites, corners = place_objects(size, config, rng)
    image, visibilities = compose(background, sprites, corners)
    image = camera_effects(image, rng.uniform() < config.blur_probability, rng.uniform(0, config.max_noise_std), rng)
    objects = [
        SceneObject(phrase, _box(sprite, corner), float(visibility))
        for phrase, sprite, corner, visibility in zip(phrases, sprites, corners, visibilities)
    ]
    return Scene(image=image, objects=objects)


def generate_video(
    seed: int, num_frames: int, size: tuple[int, int] = (240, 320), config: VideoConfig = VideoConfig()
) -> tuple[list[np.ndarray], list[list[TrackedObject]]]:
    """The video of `seed`: `num_frames` (H, W, 3) uint8 RGB frames and, per frame, its objects.

    Objects of a frame are listed in track-id order, every object in every frame, also when hidden
    (then `visibility` is 0); boxes stay inside the frame since objects bounce off its borders.
    """
    check_request(seed, size)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    height, width = size
    rng = np.random.default_rng(seed)
    background = draw_background(height, width, config.scene.backgrounds, rng)
    phrases, sprites, corners = place_objects(size, config.scene, rng)
    positions = np.array(corners, float).reshape(-1, 2)
    angles = rng.uniform(0, 2 * np.pi, size=len(sprites))
    speeds = rng.uniform(config.min_speed, config.max_speed, size=len(sprites))
    velocities = np.stack((np.cos(angles), np.sin(angles)), axis=1) * speeds[:, None]
    # Largest top-left corner that keeps each sprite inside the frame, (N, 2) as (x, y).
    limits = np.array([[width - s.mask.shape[1], height - s.mask.shape[0]] for s in sprites], float).reshape(-1, 2)
    blur = rng.uniform() < config.scene.blur_probability
    noise_std = rng.uniform(0, config.scene.max_noise_std)
    frames, tracks = [], []
    for _ in range(num_frames):
        corners = [(int(x), int(y)) for x, y in np.round(positions)]
        image, visibilities = compose(background, sprites, corners)
        frames.append(camera_effects(image, blur, noise_std, rng))
        tracks.append(
            [
                TrackedObject(index + 1, phrase, _box(sprite, corner), float(visibility))
                for index, (phrase, sprite, corner, visibility) in enumerate(zip(phrases, sprites, corners, visibilities))
            ]
        )
        positions = positions + velocities
        # Reflect off the borders: a corner past a limit comes back by as much as it overshot.
        below, above = positions < 0, positions > limits
        positions = np.where(below, -positions, np.where(above, 2 * limits - positions, positions)).clip(0, limits)
        velocities = np.where(below | above, -velocities, velocities)
    return frames, tracks


def write_mot_ground_truth(
    path: str | Path, tracks: Sequence[Sequence[TrackedObject]], min_visibility: float = 0.0
) -> None:
    """Write per-frame objects as a MOTChallenge gt.txt.

    One row per object and frame: `frame,id,bb_left,bb_top,bb_width,bb_height,conf,class,visibility`
    with frames counted from 1, class 1 (the class MOTChallenge evaluates) and conf 1, or conf 0
    ("ignore" in MOTChallenge) for objects with visibility below `min_visibility`. Coordinates are the
    0-based pixel edges of `TrackedObject.box` (not MOTChallenge's 1-based pixels): write tracker
    results with the same convention.
    """
    if not 0 <= min_visibility <= 1:
        raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility}")
    rows = []
    for frame_number, objects in enumerate(tracks, start=1):
        for item in objects:
            x0, y0, x1, y1 = item.box
            considered = int(item.visibility >= min_visibility)
            rows.append(
                f"{frame_number},{item.track_id},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},"
                f"{considered},1,{item.visibility:.4f}\n"
            )
    Path(path).write_text("".join(rows))


def write_mot_sequence(
    directory: str | Path,
    tracks: Sequence[Sequence[TrackedObject]],
    size: tuple[int, int],
    fps: float = 10.0,
    min_visibility: float = 0.0,
) -> Path:
    """Write a MOTChallenge sequence folder (`seqinfo.ini` and `gt/gt.txt`, no images) as TrackEval
    reads it; the folder's name is the sequence name. Returns the folder."""
    directory = Path(directory)
    (directory / "gt").mkdir(parents=True, exist_ok=True)
    write_mot_ground_truth(directory / "gt" / "gt.txt", tracks, min_visibility)
    (directory / "seqinfo.ini").write_text(
        "[Sequence]\n"
        f"name={directory.name}\nimDir=img1\nframeRate={fps:g}\nseqLength={len(tracks)}\n"
        f"imWidth={size[1]}\nimHeight={size[0]}\nimExt=.png\n"
    )
    logger.debug("wrote MOT sequence %s with %d frames", directory, len(tracks))
    return directory
