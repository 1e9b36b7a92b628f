"""Depth images as sensor drivers publish them, converted to metres.

Two encodings of sensor_msgs/Image carry depth: "16UC1" (uint16 millimetres, 0 = no measurement, as
RealSense, Azure Kinect and OAK drivers publish) and "32FC1" (float32 metres; drivers mark missing
measurements with 0, NaN or inf). Everything downstream works on one form: (H, W) float32 metres with
NaN where there is no valid measurement.
"""
from __future__ import annotations

import numpy as np

DEPTH_ENCODINGS = ("16UC1", "32FC1")
_DTYPES = {"16UC1": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}
_MAX_MILLIMETRES = int(np.iinfo(np.uint16).max)


def depth_in_metres(image: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) depth of `encoding` -> new (H, W) float32 metres, NaN where invalid.

    16UC1: uint16 millimetres, 0 invalid. 32FC1: float32 metres; 0, negative, NaN and inf invalid.
    Any other encoding, dtype or shape raises ValueError.
    """
    if encoding not in _DTYPES:
        raise ValueError(f"depth encoding must be one of {', '.join(DEPTH_ENCODINGS)}, got {encoding!r}")
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"a {encoding} depth image must be a 2-D (H, W) array, got shape {shape}")
    if image.dtype != _DTYPES[encoding]:
        raise ValueError(f"a {encoding} depth image must have dtype {_DTYPES[encoding]}, got {image.dtype}")
    if encoding == "16UC1":
        metres = image.astype(np.float32) / np.float32(1000.0)
        metres[image == 0] = np.nan
        return metres
    metres = image.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def depth_in_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) float metres -> (H, W) uint16 millimetres (16UC1), rounded; 0 where depth_m is invalid
    (0, negative, NaN, inf). A valid depth beyond 65.535 m cannot be encoded and raises ValueError."""
    depth_m = np.asarray(depth_m, np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth_m) & (depth_m > 0)
    millimetres = np.where(valid, np.round(np.where(valid, depth_m, 0.0) * 1000.0), 0.0)
    if millimetres.max(initial=0.0) > _MAX_MILLIMETRES:
        raise ValueError(f"16UC1 holds depths up to {_MAX_MILLIMETRES / 1000} m, got {np.nanmax(depth_m[valid]):.3f} m")
    return millimetres.astype(np.uint16)
