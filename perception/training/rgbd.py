"""Generated RGB-D scenes: the generator's scenes with a depth image and each object's true 3D box.

Objects (sprites of the generator's vocabulary, placed as in synthetic.py) are flat upright cards facing
the camera at known depths, in front of a wall: a plane, tilted by up to `max_wall_tilt_deg` about the
camera's x and y axes, behind the farthest object everywhere in the image. Nearer cards hide farther
ones (the drawing order is back to front, so the depths fall along it), so objects are partly occluded,
down to SceneConfig.min_visibility.

The camera is a pinhole without distortion (perception.spatial.camera): a card of `w` x `h` pixels at
depth z is exactly w * z / fx by h * z / fy metres, and its centre is its box's centre back-projected
at z; its size along z is 0. The depth image is registered to the colour image (same pixel grid) and
behaves like a real sensor's: Gaussian noise growing with the square of the depth (as stereo's does),
scattered pixels without a measurement, a band without measurements at the left border, and at depth
edges dropouts and flying pixels (depths between the two surfaces, as time-of-flight sensors give).
Missing measurements are 0, as drivers publish them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from perception.spatial.camera import CameraIntrinsics
from perception.spatial.depth import depth_in_millimetres
from perception.training.backgrounds import draw_background
from perception.training.sprites import Sprite
from perception.training.synthetic import SceneConfig, place_objects, camera_effects, check_request, compose

# Relative step between neighbouring depths above which two pixels lie on different surfaces (a depth edge).
EDGE_STEP = 0.02


@dataclass(frozen=True)
class RgbdSceneConfig:
    """What a generated RGB-D scene contains; depths and distances in metres."""

    # Objects, vocabulary, backgrounds and colour camera noise; half of an object may be hidden.
    scene: SceneConfig = SceneConfig(min_visibility=0.5)
    horizontal_fov_deg: float = 60.0  # fx = fy = (width / 2) / tan(fov / 2); principal point at the centre
    min_depth: float = 0.8  # object depths are drawn uniformly in [min_depth, max_depth]
    max_depth: float = 3.0
    min_wall_gap: float = 0.3  # the wall's nearest point lies this much behind the farthest object, drawn
    max_wall_gap: float = 1.5  # uniformly in [min_wall_gap, max_wall_gap]
    max_wall_tilt_deg: float = 25.0  # about each of the camera's x and y axes, drawn uniformly in +-this
    depth_noise: float = 0.002  # noise standard deviation = depth_noise * z^2 (2 mm at 1 m, 18 mm at 3 m)
    dropout: float = 0.02  # share of pixels without a measurement, scattered at random
    max_invalid_band: float = 0.06  # width of the invalid left band, drawn in [0, this] of the image width
    edge_dropout: float = 0.5  # chance that a pixel at a depth edge has no measurement
    # Chance that a measured pixel at a depth edge is a "flying pixel": a depth between the two surfaces.
    flying_pixels: float = 0.3

    def __post_init__(self) -> None:
        if not 10 <= self.horizontal_fov_deg <= 120:
            raise ValueError(f"horizontal_fov_deg must be in [10, 120], got {self.horizontal_fov_deg}")
        if not 0 < self.min_depth <= self.max_depth:
            raise ValueError(f"need 0 < min_depth <= max_depth, got {self.min_depth} and {self.max_depth}")
        if not 0 < self.min_wall_gap <= self.max_wall_gap:
            raise ValueError(f"need 0 < min_wall_gap <= max_wall_gap, got {self.min_wall_gap} and {self.max_wall_gap}")
        if not 0 <= self.max_wall_tilt_deg <= 40:
            raise ValueError(f"max_wall_tilt_deg must be in [0, 40], got {self.max_wall_tilt_deg}")
        for name in ("dropout", "max_invalid_band", "edge_dropout", "flying_pixels"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.depth_noise < 0:
            raise ValueError(f"depth_noise must be >= 0, got {self.depth_noise}")


class RgbdObject(NamedTuple):
    phrase: str
    box: tuple[float, float, float, float]  # xyxy, pixel edges of the image
    visibility: float  # fraction of the object's pixels not hidden by nearer objects, in [0, 1]
    center: np.ndarray  # (3,) true centre in the camera's optical frame (x right, y down, z forward), metres
    size: np.ndarray  # (3,) true extent along x, y, z (metres); z is 0 (a flat card)


@dataclass
class RgbdScene:
    """image: (H, W, 3) uint8 RGB; depth: (H, W) float32 metres registered to it, 0 where the sensor has
    no measurement (the 32FC1 form); objects back to front (later ones nearer)."""

    image: np.ndarray
    depth: np.ndarray
    intrinsics: CameraIntrinsics
    objects: list[RgbdObject]

    def depth_16uc1(self) -> np.ndarray:
        """(H, W) uint16 millimetres, 0 where invalid: the depth as a 16UC1 image."""
        return depth_in_millimetres(self.depth)


def _intrinsics(size: tuple[int, int], fov_deg: float) -> CameraIntrinsics:
    height, width = size
    focal = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return CameraIntrinsics(fx=focal, fy=focal, cx=(width - 1) / 2, cy=(height - 1) / 2, width=width, height=height)


def _wall(intrinsics: CameraIntrinsics, nearest: float, config: RgbdSceneConfig, rng: np.random.Generator) -> np.ndarray:
    """(H, W) depth of a tilted plane whose nearest point in view is at `nearest` metres."""
    tilt_x, tilt_y = np.tan(np.radians(rng.uniform(-config.max_wall_tilt_deg, config.max_wall_tilt_deg, size=2)))
    # The plane z + tilt_x * x + tilt_y * y = d meets the ray (rx, ry, 1) at z = d / (1 + tilt_x rx + tilt_y ry).
    rays_x = (np.arange(intrinsics.width) - intrinsics.cx) / intrinsics.fx
    rays_y = (np.arange(intrinsics.height) - intrinsics.cy) / intrinsics.fy
    denominator = 1.0 + tilt_x * rays_x[None, :] + tilt_y * rays_y[:, None]
    if denominator.min() <= 0:
        raise ValueError("the wall's tilt makes it parallel to some camera ray: lower max_wall_tilt_deg or the field of view")
    return nearest * denominator.max() / denominator


def _depth_edges(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels next to a neighbour (4-connected) on another surface."""
    log_depth = np.log(depth)
    edges = np.zeros(depth.shape, bool)
    steps_x = np.abs(np.diff(log_depth, axis=1)) > np.log1p(EDGE_STEP)
    steps_y = np.abs(np.diff(log_depth, axis=0)) > np.log1p(EDGE_STEP)
    edges[:, 1:] |= steps_x
    edges[:, :-1] |= steps_x
    edges[1:, :] |= steps_y
    edges[:-1, :] |= steps_y
    return edges


def _sensor_effects(depth: np.ndarray, config: RgbdSceneConfig, rng: np.random.Generator) -> np.ndarray:
    """Noise, flying pixels and missing measurements (0) of a depth sensor, on exact depths."""
    edges = _depth_edges(depth)
    # A flying pixel mixes the nearest and the farthest surface of its 3 x 3 neighbourhood.
    nearest, farthest = cv2.erode(depth, np.ones((3, 3))), cv2.dilate(depth, np.ones((3, 3)))
    flying = edges & (rng.uniform(size=depth.shape) < config.flying_pixels)
    depth = np.where(flying, nearest + rng.uniform(size=depth.shape) * (farthest - nearest), depth)
    noisy = depth + rng.normal(size=depth.shape) * config.depth_noise * depth**2
    missing = rng.uniform(size=depth.shape) < config.dropout
    missing |= edges & (rng.uniform(size=depth.shape) < config.edge_dropout)
    missing[:, : int(rng.uniform(0, config.max_invalid_band) * depth.shape[1])] = True
    return np.where(missing, 0.0, noisy).astype(np.float32)


def generate_rgbd_scene(
    seed: int, size: tuple[int, int] = (240, 320), config: RgbdSceneConfig = RgbdSceneConfig()
) -> RgbdScene:
    """The RGB-D scene of `seed` at `size` (height, width); equal arguments give equal scenes."""
    check_request(seed, size)
    rng = np.random.default_rng(seed)
    intrinsics = _intrinsics(size, config.horizontal_fov_deg)
    background = draw_background(size[0], size[1], config.scene.backgrounds, rng)
    phrases, sprites, corners = place_objects(size, config.scene, rng)
    # Back to front: the first object drawn is the farthest.
    depths = np.sort(rng.uniform(config.min_depth, config.max_depth, size=len(sprites)))[::-1]
    farthest = depths[0] if len(depths) else config.min_depth
    wall = _wall(intrinsics, farthest + rng.uniform(config.min_wall_gap, config.max_wall_gap), config, rng)
    cards = [Sprite(mask=sprite.mask, rgb=np.full(sprite.mask.shape, z)) for sprite, z in zip(sprites, depths)]
    depth, _ = compose(wall, cards, corners)
    image, visibilities = compose(background, sprites, corners)
    image = camera_effects(image, rng.uniform() < config.scene.blur_probability,
                           rng.uniform(0, config.scene.max_noise_std), rng)
    objects = []
    for phrase, sprite, (x, y), z, visibility in zip(phrases, sprites, corners, depths, visibilities):
        height, width = sprite.mask.shape
        # Pixel columns x .. x + width - 1 have centres u = x .. x + width - 1 (CameraInfo convention).
        center = intrinsics.back_project(x + (width - 1) / 2, y + (height - 1) / 2, z)
        extent = np.array([width * z / intrinsics.fx, height * z / intrinsics.fy, 0.0])
        objects.append(RgbdObject(phrase, (float(x), float(y), float(x + width), float(y + height)),
                                  float(visibility), center, extent))
    return RgbdScene(image=image, depth=_sensor_effects(depth, config, rng), intrinsics=intrinsics, objects=objects)
