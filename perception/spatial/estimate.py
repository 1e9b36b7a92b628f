"""An object's 3D centre and size from the depth inside its 2D box.

The depth inside a box mixes three things: the object, the background seen around it (in the box's
corners, and through it), and whatever stands in front of it (an occluder). The estimate finds the
object's depths in four steps:

1. Sample the box's inscribed ellipse, each pixel weighted by 1 - r^2 (r = 0 at the box's centre, 1 on
   the ellipse). The corners, where a box shows the most background, are left out, and the centre,
   where the detected object almost always is, counts most. Invalid depths (NaN, inf, 0, negative)
   are ignored.
2. Cluster the depths: a histogram of log depth with bins `bin_width` (relative, 1% by default, so a
   bin grows with distance like sensor noise does); bins holding fewer than `min_bin_share` of the
   samples are empty (stray "flying" pixels at depth edges fall there), and occupied bins separated by
   at most `max_gap_bins` empty bins form a run. Flying pixels can still fill the gap between two
   surfaces close in depth, so a run is split at every valley of the histogram lower than
   `valley_ratio` of the peaks on both sides. A surface is one cluster; two surfaces about 2% of
   the distance apart or more are two.
3. Choose the cluster that explains the object: among clusters of at least `min_pixels` samples, the
   one with the largest score = centre-weighted support x (1 - its share of a band around the box).
   The band is `band_width` of the box's sides wide on every side (at least 2 pixels), and a cluster's
   share is the fraction of the band's valid depths within the cluster's depth range. The box ends where
   the object ends, while the background continues outside it (share near 1) and an occluder usually
   crosses the box's border (it is another object, not bounded by this box), so the share tells them
   from the object even where they outweigh it inside the box: background seen through a thin or
   hollow object, or an occluder over part of the box. An occluder covering 40% of a box from a side
   holds about a third of the centre weight and loses; a small near sliver never pulls the depth (it
   has too little support), which a "nearest cluster" rule gets wrong once the sliver has min_pixels.
4. The object's depth z is the cluster's median; the centre is the box's centre back-projected at z;
   width and height are the box's back-projected at z; the depth extent is the spread of the cluster
   between its 10th and 90th percentiles. The camera sees the object's front surface, so for a deep
   object the true centre lies up to half its depth extent behind z.

The result is None when fewer than `min_pixels` valid depths lie in the ellipse or no cluster has
`min_pixels` samples. A box larger than `max_samples` pixels is sampled on a regular grid of about that
many (every k-th row and column), so the time per box stays bounded; counts are of samples then.

Where it fails: an occluder that covers the box's centre and ends inside the box (a small object in
front of the middle of a larger one) takes the object's place; on 300 generated scenes, 6 of the 99
objects 50-80% visible are off by more than 5% of their distance, none of those more visible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from perception.spatial.camera import CameraIntrinsics

MIN_PIXELS = 10
BIN_WIDTH = 0.01
MIN_BIN_SHARE = 0.005
MAX_GAP_BINS = 1
VALLEY_RATIO = 0.2
BAND_WIDTH = 0.1
MIN_BAND_PIXELS = 2
# About 70 x 70 pixels: enough for percentiles at 1% of depth, and a few ms at most per box.
MAX_SAMPLES = 5000
EXTENT_PERCENTILES = (10.0, 90.0)


@dataclass(frozen=True, eq=False)
class Object3D:
    """A 3D box in the camera's optical frame (x right, y down, z forward, metres).

    center: (3,) float64 centre; size: (3,) float64 extent along x, y and z; depth_pixels: how many valid
    depth pixels the estimate rests on.
    """

    center: np.ndarray
    size: np.ndarray
    depth_pixels: int

    def __post_init__(self) -> None:
        for name in ("center", "size"):
            value = np.array(getattr(self, name), np.float64)
            if value.shape != (3,) or not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be 3 finite numbers, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if np.any(self.size < 0):
            raise ValueError(f"size must not be negative, got {self.size}")
        if self.depth_pixels < 0:
            raise ValueError(f"depth_pixels must not be negative, got {self.depth_pixels}")


def check_box(box_xyxy: Sequence[float]) -> np.ndarray:
    """(4,) float64 xyxy pixel edges, or ValueError unless finite with x0 < x1 and y0 < y1."""
    box = np.asarray(box_xyxy, np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box must be finite xyxy pixel edges with x0 < x1 and y0 < y1, got {box_xyxy!r}")
    return box


def box_pixels(depth_m: np.ndarray, box: np.ndarray, step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depths, column centres and row centres (edge coordinates) of the pixels whose centres lie inside
    `box`, every `step`-th row and column, each (h, w); empty when the box lies outside the image."""
    height, width = depth_m.shape
    # Pixel c's centre is at edge coordinate c + 0.5; it is inside when x0 <= c + 0.5 < x1.
    col0, col1 = max(int(np.ceil(box[0] - 0.5)), 0), max(min(int(np.ceil(box[2] - 0.5)), width), 0)
    row0, row1 = max(int(np.ceil(box[1] - 0.5)), 0), max(min(int(np.ceil(box[3] - 0.5)), height), 0)
    rows, cols = np.mgrid[row0:row1:step, col0:col1:step]
    return depth_m[row0:row1:step, col0:col1:step], cols + 0.5, rows + 0.5


def valid_depths(depths: np.ndarray) -> np.ndarray:
    """Bool mask of usable depths: finite and positive."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depths) & (depths > 0)


def _centre_weights(box: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """1 - r^2 inside the box's inscribed ellipse, 0 outside."""
    across = (cols - (box[0] + box[2]) / 2) / ((box[2] - box[0]) / 2)
    down = (rows - (box[1] + box[3]) / 2) / ((box[3] - box[1]) / 2)
    return np.clip(1.0 - across**2 - down**2, 0.0, None)


def _valley_cuts(heights: np.ndarray, valley_ratio: float, floor: float) -> list[int]:
    """Where a run of histogram bins splits into surfaces: the bin after each valley lower than
    `valley_ratio` times the peaks on both its sides, both peaks holding at least `floor`."""
    cuts, left_peak, valley, valley_at = [], heights[0], heights[0], 0
    for index in range(1, heights.size):
        height = heights[index]
        if valley < valley_ratio * min(left_peak, height) and min(left_peak, height) >= floor:
            cuts.append(valley_at + 1)
            left_peak = valley = height
            valley_at = index
        elif height >= left_peak:  # higher than the left peak: the dip before was shallow, one surface
            left_peak = valley = height
            valley_at = index
        elif height < valley:
            valley, valley_at = height, index
    return cuts


def _clusters(
    depths: np.ndarray, bin_width: float, min_bin_share: float, max_gap_bins: int, valley_ratio: float
) -> np.ndarray:
    """(N,) cluster index of each depth (0 nearest, ...), -1 for depths in empty bins."""
    bins = np.floor((np.log(depths) - np.log(depths.min())) / np.log1p(bin_width)).astype(np.int64)
    counts = np.bincount(bins)
    floor = max(1.0, min_bin_share * depths.size)
    occupied = np.flatnonzero(counts >= floor)
    if occupied.size == 0:  # depths spread so thinly that no bin holds a surface
        return np.full(depths.shape, -1)
    # Runs of occupied bins; a run ends where more than max_gap_bins empty bins follow it.
    ends = np.flatnonzero(np.diff(occupied) > max_gap_bins + 1)
    run_starts, run_ends = occupied[np.concatenate(([0], ends + 1))], occupied[np.concatenate((ends, [-1]))] + 1
    # Inside a run, flying pixels may join two surfaces: split it at deep valleys of the histogram.
    cluster_of_bin = np.full(counts.size, -1)
    cluster = 0
    for start, end in zip(run_starts, run_ends):
        bounds = [start, *(start + cut for cut in _valley_cuts(counts[start:end], valley_ratio, floor)), end]
        for low, high in zip(bounds[:-1], bounds[1:]):
            cluster_of_bin[low:high] = cluster
            cluster += 1
    return cluster_of_bin[bins]


def _band_depths(depth_m: np.ndarray, box: np.ndarray, band_width: float, step: int) -> np.ndarray:
    """Valid depths of every `step`-th pixel in a band `band_width` of the box's sides wide around it."""
    margin_x = max((box[2] - box[0]) * band_width, MIN_BAND_PIXELS * step)
    margin_y = max((box[3] - box[1]) * band_width, MIN_BAND_PIXELS * step)
    outer = box + np.array([-margin_x, -margin_y, margin_x, margin_y])
    depths, cols, rows = box_pixels(depth_m, outer, step)
    inside = (cols >= box[0]) & (cols < box[2]) & (rows >= box[1]) & (rows < box[3])
    depths = depths[~inside]
    return depths[valid_depths(depths)]


def _choose(labels: np.ndarray, depths: np.ndarray, weights: np.ndarray, band: np.ndarray, min_pixels: int) -> int | None:
    """The cluster that explains the object (see the module's docstring), or None."""
    best, best_score = None, 0.0
    for cluster in range(int(labels.max()) + 1):
        members = labels == cluster
        if members.sum() < min_pixels:
            continue
        cluster_depths = depths[members]
        in_band = (band >= cluster_depths.min()) & (band <= cluster_depths.max())
        score = weights[members].sum() * (1.0 - (in_band.mean() if band.size else 0.0))
        if best is None or score > best_score:
            best, best_score = cluster, score
    return best


def estimate_object_3d(
    depth_m: np.ndarray,
    box_xyxy: Sequence[float],
    intrinsics: CameraIntrinsics,
    *,
    min_pixels: int = MIN_PIXELS,
    bin_width: float = BIN_WIDTH,
    min_bin_share: float = MIN_BIN_SHARE,
    max_gap_bins: int = MAX_GAP_BINS,
    valley_ratio: float = VALLEY_RATIO,
    band_width: float = BAND_WIDTH,
    max_samples: int = MAX_SAMPLES,
) -> Object3D | None:
    """The 3D box of the object detected in `box_xyxy` (pixel edges of the colour image), from
    `depth_m`: (H, W) float metres registered to the colour image (NaN, inf, 0 and negative invalid;
    see depth.depth_in_metres). None when too few valid depths support it (see the module docstring).
    """
    intrinsics.check_depth(depth_m)
    box = check_box(box_xyxy)
    if max_samples < 1 or min_pixels < 1 or not 0 < bin_width < 1 or not 0 <= min_bin_share < 1 or max_gap_bins < 0:
        raise ValueError("need max_samples >= 1, min_pixels >= 1, 0 < bin_width < 1, 0 <= min_bin_share < 1 and max_gap_bins >= 0")
    if not 0 < valley_ratio < 1:
        raise ValueError(f"valley_ratio must be in (0, 1), got {valley_ratio}")
    if not band_width > 0:
        raise ValueError(f"band_width must be positive (a fraction of the box's sides), got {band_width}")
    # Large boxes are sampled on a grid of about max_samples pixels: the clusters keep their shares.
    step = max(1, int(np.ceil(np.sqrt((box[2] - box[0]) * (box[3] - box[1]) / max_samples))))
    depths, cols, rows = box_pixels(depth_m, box, step)
    weights = _centre_weights(box, cols, rows)
    usable = valid_depths(depths) & (weights > 0)
    if usable.sum() < min_pixels:
        return None
    depths, weights = depths[usable].astype(np.float64), weights[usable]
    labels = _clusters(depths, bin_width, min_bin_share, max_gap_bins, valley_ratio)
    chosen = _choose(labels, depths, weights, _band_depths(depth_m, box, band_width, step), min_pixels)
    if chosen is None:
        return None
    members = depths[labels == chosen]
    return object_from_depth(box, float(np.median(members)), members, intrinsics)


def object_from_depth(box: np.ndarray, z: float, members: np.ndarray, intrinsics: CameraIntrinsics) -> Object3D:
    """The box back-projected at depth z, its depth extent the spread of `members` (the object's depths)."""
    low, high = np.percentile(members, EXTENT_PERCENTILES)
    centre = intrinsics.back_project((box[0] + box[2]) / 2 - 0.5, (box[1] + box[3]) / 2 - 0.5, z)
    size = np.array([(box[2] - box[0]) * z / intrinsics.fx, (box[3] - box[1]) * z / intrinsics.fy, high - low])
    return Object3D(center=centre, size=size, depth_pixels=int(members.size))
