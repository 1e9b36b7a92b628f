"""How far estimated 3D centres are from the truth, on generated RGB-D scenes, beside a naive baseline.

The baseline is what a first attempt does: the median of every valid depth in the box, the box's centre
back-projected at it. Both run on the same scenes, the same boxes and the same depth images. The boxes come
from a box source: the true boxes (optionally moved like a detector's), or a detector's own boxes matched
to the true objects (DetectedBoxes), as a robot would get them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from perception.eval.crowd_detection import match_to_truth
from perception.spatial.camera import CameraIntrinsics
from perception.spatial.depth import depth_in_metres
from perception.spatial.estimate import (Object3D, box_pixels, check_box, estimate_object_3d, object_from_depth,
                                         valid_depths)
from perception.training.prompts import PromptConfig, sample_prompt
from perception.training.rgbd import RgbdScene, RgbdSceneConfig, generate_rgbd_scene

Estimator = Callable[[np.ndarray, Sequence[float], CameraIntrinsics], "Object3D | None"]
# (scene, its seed) -> one entry per scene.objects: an xyxy pixel box, or None where the object has no box.
BoxSource = Callable[[RgbdScene, int], list]


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


def true_boxes(box_jitter: float = 0.0) -> BoxSource:
    """The true boxes; each edge moved by a uniform fraction in [-box_jitter, box_jitter] of the box's width
    (x edges) or height (y edges), as a detector's boxes miss the true ones (drawn from the scene's seed)."""
    if not 0 <= box_jitter < 0.5:
        raise ValueError(f"box_jitter must be in [0, 0.5), got {box_jitter}")

    def boxes(scene: RgbdScene, seed: int) -> list:
        rng = np.random.default_rng(seed)
        moved = []
        for item in scene.objects:
            x0, y0, x1, y1 = item.box
            moved.append(np.array(item.box) + rng.uniform(-box_jitter, box_jitter, 4) * ([x1 - x0, y1 - y0] * 2))
        return moved

    return boxes


class DetectedBoxes:
    """A detector's boxes: each scene is detected with a prompt naming its phrases and `absent` absent ones of
    `vocabulary` (drawn from (prompt_seed, the scene's seed)); each object gets the box of the detection of
    its phrase matched to it (crowd_detection.match_to_truth: IoU >= 0.5, greedily by score), or None."""

    def __init__(self, detector, vocabulary: Sequence[str], prompt_seed: int = 0, absent: int = 3) -> None:
        self.detector = detector
        self.vocabulary = list(vocabulary)
        self.prompt_seed = prompt_seed
        self.prompts = PromptConfig(min_negatives=absent, max_negatives=absent, drop_positive_probability=0.0)

    def __call__(self, scene: RgbdScene, seed: int) -> list:
        phrases = [item.phrase for item in scene.objects]
        rng = np.random.default_rng((self.prompt_seed, seed))
        self.detector.set_prompt(sample_prompt(phrases, self.vocabulary, rng, self.prompts).text)
        detections = self.detector.detect([scene.image])[0]
        matched = match_to_truth(detections, phrases, np.array([item.box for item in scene.objects]))
        return [None if index < 0 else detections.boxes[index] for index in matched]


def evaluate_on_generated_scenes(
    num_scenes: int,
    first_seed: int = 0,
    size: tuple[int, int] = (240, 320),
    config: RgbdSceneConfig = RgbdSceneConfig(),
    min_visibility: float = 0.5,
    encoding: str = "16UC1",
    boxes: BoxSource | None = None,
) -> dict:
    """Centre errors of estimate_object_3d and of the naive baseline on the boxes of `boxes` (default: the
    true boxes) of every object at least `min_visibility` visible in scenes first_seed .. first_seed +
    num_scenes - 1, with the depth sent through `encoding` ("16UC1" millimetres or "32FC1" metres) as a
    driver would publish it. `missed`: such objects without a box (not detected), left out of the errors.
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be at least 1, got {num_scenes}")
    boxes = boxes or true_boxes()
    estimators: dict[str, Estimator] = {"estimate": estimate_object_3d, "naive_box_median": naive_box_median_3d}
    results: dict[str, list] = {name: [] for name in estimators}
    truths = []
    missed = 0
    for seed in range(first_seed, first_seed + num_scenes):
        scene = generate_rgbd_scene(seed, size, config)
        published = scene.depth_16uc1() if encoding == "16UC1" else scene.depth
        depth_m = depth_in_metres(published, encoding)
        for item, box in zip(scene.objects, boxes(scene, seed), strict=True):
            if item.visibility < min_visibility:
                continue
            if box is None:
                missed += 1
                continue
            truths.append(item.center)
            for name, estimator in estimators.items():
                results[name].append(estimator(depth_m, box, scene.intrinsics))
    return {"scenes": num_scenes, "encoding": encoding, "missed": missed,
            **{name: centre_errors(estimates, truths) for name, estimates in results.items()}}
