"""How far estimated 3D centres are from the truth, on generated RGB-D scenes, beside a naive baseline.

The baseline is what a first attempt does: the median of every valid depth in the box, the box's centre
back-projected at it. Both run on the same scenes, the same (true) boxes and the same depth images.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from perception.spatial.camera import CameraIntrinsics
from perception.spatial.depth import depth_in_metres
from perception.spatial.estimate import (Object3D, box_pixels, check_box, estimate_object_3d, object_from_depth,
                                         valid_depths)
from perception.training.rgbd import RgbdSceneConfig, generate_rgbd_scene

Estimator = Callable[[np.ndarray, Sequence[float], CameraIntrinsics], "Object3D | None"]


def naive_box_median_3d(depth_m: np.ndarray, box_xyxy: Sequence[float], intrinsics: CameraIntrinsics) -> Object3D | None:
    """The baseline: the median of every valid depth in the box (None when the box has none)."""
    intrinsics.check_depth(depth_m)
    box = check_box(box_xyxy)
    depths, _, _ = box_pixels(depth_m, box)
    depths = depths[valid_depths(depths)].astype(np.float64)
    if depths.size == 0:
        return None
    return object_from_depth(box, float(np.median(depths)), depths, intrinsics)


def centre_errors(estimates: Sequence[Object3D | None], true_centres: Sequence[np.ndarray]) -> dict:
    """Median and 90th percentile of the centre error, in metres and relative to the true distance from
    the camera, over objects; a missing estimate (None) counts as an infinite error and in `missing`."""
    if len(estimates) != len(true_centres):
        raise ValueError(f"{len(estimates)} estimates for {len(true_centres)} true centres")
    truths = np.asarray(true_centres, np.float64).reshape(-1, 3)
    errors = np.array([np.inf if estimate is None else np.linalg.norm(estimate.center - truth)
                       for estimate, truth in zip(estimates, truths)])
    relative = errors / np.linalg.norm(truths, axis=1)

    def percentile(values: np.ndarray, q: float) -> float | None:
        # "lower" keeps an infinite error a real number unless at least that share of estimates is missing.
        return float(np.percentile(values, q, method="lower")) if values.size else None

    return {
        "objects": int(errors.size),
        "missing": int(np.isinf(errors).sum()),
        "median_relative_error": percentile(relative, 50),
        "p90_relative_error": percentile(relative, 90),
        "median_error_m": percentile(errors, 50),
        "p90_error_m": percentile(errors, 90),
    }


def evaluate_on_generated_scenes(
    num_scenes: int,
    first_seed: int = 0,
    size: tuple[int, int] = (240, 320),
    config: RgbdSceneConfig = RgbdSceneConfig(),
    min_visibility: float = 0.5,
    encoding: str = "16UC1",
    box_jitter: float = 0.0,
) -> dict:
    """Centre errors of estimate_object_3d and of the naive baseline on the true boxes of every object at
    least `min_visibility` visible in scenes first_seed .. first_seed + num_scenes - 1, with the depth
    sent through `encoding` ("16UC1" millimetres or "32FC1" metres) as a driver would publish it.

    box_jitter: each box edge moves by a uniform fraction in [-box_jitter, box_jitter] of the box's width
    (x edges) or height (y edges), as a detector's boxes miss the true ones; both see the same boxes.
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be at least 1, got {num_scenes}")
    if not 0 <= box_jitter < 0.5:
        raise ValueError(f"box_jitter must be in [0, 0.5), got {box_jitter}")
    estimators: dict[str, Estimator] = {"estimate": estimate_object_3d, "naive_box_median": naive_box_median_3d}
    results: dict[str, list] = {name: [] for name in estimators}
    truths = []
    for seed in range(first_seed, first_seed + num_scenes):
        scene = generate_rgbd_scene(seed, size, config)
        published = scene.depth_16uc1() if encoding == "16UC1" else scene.depth
        depth_m = depth_in_metres(published, encoding)
        rng = np.random.default_rng(seed)
        for item in scene.objects:
            if item.visibility >= min_visibility:
                x0, y0, x1, y1 = item.box
                box = np.array(item.box) + rng.uniform(-box_jitter, box_jitter, 4) * ([x1 - x0, y1 - y0] * 2)
                truths.append(item.center)
                for name, estimator in estimators.items():
                    results[name].append(estimator(depth_m, box, scene.intrinsics))
    return {"scenes": num_scenes, "encoding": encoding, "box_jitter": box_jitter,
            **{name: centre_errors(estimates, truths) for name, estimates in results.items()}}
