"""Detection on still images of crowds: how many of several instances of one phrase a detector finds.

Each image is a frame of a crowd video (perception.training.crowds.generate_crowd_scene: 6-15 walkers of one
phrase, "green circle" by default, entering, crossing and hiding each other) at 240x320, the size of the
tracking evaluation's crowd videos. The prompt names the image's phrases plus three absent ones. Recall counts
the walkers that are at least half visible (VISIBLE), each matched at most once by a detection of its phrase at
IoU >= 0.5, greedily by score, among the detections the detector reports (above the box threshold, and the boxes
of present phrases above present_phrase_threshold: perception.postprocess.at_threshold); precision is the share
of those detections that matched someone (a walker less than half visible may be matched too, and then is not a false
positive). AP is COCO AP against every walker at least 30% visible.
"""
from __future__ import annotations

import numpy as np
import torch

from perception.boxes import box_iou
from perception.eval.detection import evaluate_detections
from perception.postprocess import at_threshold
from perception.training.crowds import CROWD, CrowdConfig, generate_crowd_scene
from perception.training.prompts import PromptConfig, sample_prompt
from perception.training.synthetic import Scene
from perception.types import Detections

# Crowd evaluation seeds: apart from the tracking evaluation's crowd videos (seeds 0.. ) and from training's.
CROWD_EVAL_FIRST_SEED = 500_000
VISIBLE = 0.5
MATCH_IOU = 0.5
AP_BOX_THRESHOLD = 0.05  # AP ranks every detection; the detector's own threshold would cut the curve short


def match_to_truth(detections: Detections, phrases: list[str], truth_boxes: np.ndarray,
                   min_iou: float = MATCH_IOU) -> np.ndarray:
    """(T,) int: for each true object (phrase, xyxy box), the index of the detection that found it, -1 for none.
    Detections in order of score each take the unmatched object of their phrase they overlap most, at
    IoU >= min_iou."""
    order = np.argsort(-np.asarray(detections.scores, np.float64), kind="stable")
    truth = np.asarray(truth_boxes, np.float32).reshape(-1, 4)
    if len(truth) and len(detections.boxes):
        overlaps = box_iou(torch.as_tensor(np.asarray(detections.boxes, np.float32)).reshape(-1, 4),
                           torch.as_tensor(truth)).numpy()
    else:
        overlaps = np.zeros((len(detections.boxes), len(truth)))
    matched = np.full(len(truth), -1)
    for index in order:
        candidates = [(overlaps[index, k], k) for k, phrase in enumerate(phrases)
                      if matched[k] < 0 and phrase == detections.labels[index] and overlaps[index, k] >= min_iou]
        if candidates:
            matched[max(candidates)[1]] = index
    return matched


def match_count(detections: Detections, scene: Scene, min_visibility: float = VISIBLE) -> tuple[int, int, int]:
    """(walkers at least min_visibility visible that a detection found, such walkers, detections that found
    any walker), matched by match_to_truth."""
    taken = match_to_truth(detections, [item.phrase for item in scene.objects], scene.boxes) >= 0
    visible = np.array([item.visibility >= min_visibility for item in scene.objects], bool)
    return int((taken & visible).sum()), int(visible.sum()), int(taken.sum())


def evaluate_on_crowd_scenes(detector, vocabulary: list[str], num_images: int = 100, size: tuple[int, int] = (240, 320),
                             seed: int = 0, config: CrowdConfig = CROWD) -> dict[str, float]:
    """Recall and precision at the detector's box threshold, and AP, over crowd images of seeds
    CROWD_EVAL_FIRST_SEED + seed + i."""
    prompts = PromptConfig(min_negatives=3, max_negatives=3, drop_positive_probability=0.0)
    rng = np.random.default_rng(seed)
    scenes = [generate_crowd_scene(CROWD_EVAL_FIRST_SEED + seed + index, size, config) for index in range(num_images)]
    found = visible = matched = kept = 0
    predictions = []
    for scene in scenes:
        detector.set_prompt(sample_prompt(scene.labels, vocabulary, rng, prompts).text)
        detections = detector.detect([scene.image], box_threshold=AP_BOX_THRESHOLD)[0]
        predictions.append(detections)
        shown = at_threshold(detections, detector.config.postprocess)
        counts = match_count(shown, scene)
        found, visible, matched, kept = found + counts[0], visible + counts[1], matched + counts[2], kept + len(shown)
    metrics = evaluate_detections(predictions, scenes)
    return {"recall": round(found / max(1, visible), 4), "precision": round(matched / max(1, kept), 4),
            "visible_walkers": visible, "box_threshold": detector.box_threshold,
            "present_phrase_threshold": detector.config.postprocess.present_phrase_threshold, "AP": metrics["AP"],
            "AP50": metrics["AP50"], "images": num_images}
