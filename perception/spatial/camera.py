"""A pinhole camera's intrinsics, as sensor_msgs/CameraInfo gives them.

Pixel coordinates follow CameraInfo: the centre of pixel (column c, row r) is (u, v) = (c, r). Boxes
elsewhere in this package are xyxy pixel edges (a box over columns 10..19 has x0 = 10, x1 = 20), so an
edge coordinate e is u = e - 0.5. Points are in the camera's optical frame: x right, y down, z forward
(metres).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Focal lengths and principal point in pixels, and the image size they belong to."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number of pixels, got {value}")
        for name in ("cx", "cy"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer number of pixels, got {value!r}")

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> CameraIntrinsics:
        """From CameraInfo.k: 9 values, the row-major 3x3 matrix [fx 0 cx; 0 fy cy; 0 0 1] (no skew)."""
        values = [float(value) for value in k]
        if len(values) != 9:
            raise ValueError(f"K must have 9 values (row-major 3x3), got {len(values)}")
        if not any(values):
            raise ValueError("K is all zeros: the camera is not calibrated (CameraInfo's default)")
        fx, skew, cx, _, fy, cy = values[:6]
        if values[3] != 0 or values[6:] != [0.0, 0.0, 1.0]:
            raise ValueError(f"K must be [fx 0 cx; 0 fy cy; 0 0 1], got {values}")
        if skew != 0:
            raise ValueError(f"K has skew {skew}; cameras with skew are not supported")
        return cls(fx=fx, fy=fy, cx=cx, cy=cy, width=int(width), height=int(height))

    def check_depth(self, depth: np.ndarray) -> None:
        """Raise ValueError unless `depth` is (height, width). The depth image must be registered
        (aligned) to the colour image these intrinsics describe: same size, same pixel grid; a raw depth
        image from the depth sensor's own optics is not, even when its size happens to match."""
        if np.ndim(depth) != 2:
            raise ValueError(f"depth must be a 2-D (H, W) array, got shape {np.shape(depth)}")
        if tuple(depth.shape) != (self.height, self.width):
            raise ValueError(
                f"depth image is {depth.shape[1]}x{depth.shape[0]} but the colour camera is "
                f"{self.width}x{self.height}: the depth must be registered (aligned) to the colour image"
            )

    def back_project(self, u: np.ndarray | float, v: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        """Pixel coordinates (u, v) at depth z (metres) -> (..., 3) points (x, y, z) in the optical frame."""
        u, v, z = np.broadcast_arrays(*(np.asarray(value, np.float64) for value in (u, v, z)))
        return np.stack(((u - self.cx) * z / self.fx, (v - self.cy) * z / self.fy, z), axis=-1)
