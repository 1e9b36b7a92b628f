"""How far a detector in a lower precision (bfloat16, float16) agrees with the same detector in float32 on the
same inputs: the share of float32 detections that a lower-precision detection of the same phrase matches at
IoU >= AGREEMENT_IOU (one to one, greedily by score: crowd_detection.match_to_truth), and the largest score
difference between matched detections. The float32 detections counted are those a user sees (at or above the
default box threshold, or the call's when higher); the other detector's may score down to the call's threshold,
so a box that crosses the threshold by a small score difference is matched and its difference reported.
Evaluations run both detectors in one process (ComparedDetector) and print these beside their metrics, float32
being the baseline every precision is held to."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from perception.eval.crowd_detection import match_to_truth
from perception.postprocess import PostprocessConfig, select
from perception.types import Detections

AGREEMENT_IOU = 0.9


@dataclass
class Agreement:
    """Running totals over the images compared so far."""

    counted_from: float = PostprocessConfig.box_threshold  # float32 detections at or above this score count
    float32_detections: int = 0
    matched: int = 0
    max_score_difference: float = 0.0  # over matched pairs

    def add(self, float32: Detections, other: Detections) -> None:
        """One image's detections from the float32 detector and from the other, at the same threshold."""
        float32 = select(float32, np.flatnonzero(float32.scores >= self.counted_from).tolist())
        matched = match_to_truth(other, list(float32.labels), float32.boxes, min_iou=AGREEMENT_IOU)
        found = matched >= 0
        self.float32_detections += len(matched)
        self.matched += int(found.sum())
        if found.any():
            differences = np.abs(np.asarray(float32.scores, np.float64)[found]
                                 - np.asarray(other.scores, np.float64)[matched[found]])
            self.max_score_difference = max(self.max_score_difference, float(differences.max()))

    def as_dict(self) -> dict:
        """agreement_with_float32 (None when float32 found nothing), max_score_difference_with_float32,
        float32_detections (counted: scores >= agreement_counted_from)."""
        share = self.matched / self.float32_detections if self.float32_detections else None
        return {"agreement_with_float32": None if share is None else round(share, 4),
                "max_score_difference_with_float32": round(self.max_score_difference, 4),
                "float32_detections": self.float32_detections, "agreement_counted_from": self.counted_from}


class ComparedDetector:
    """Answers as ``detector`` does, and runs ``float32_detector`` (the same weights in float32) on every call
    with the same prompt, images and threshold, adding both results to ``agreement`` and their wall times to
    ``seconds`` ({"float32": ..., "other": ...})."""

    def __init__(self, detector, float32_detector, counted_from: float = PostprocessConfig.box_threshold) -> None:
        self.detector, self.float32_detector = detector, float32_detector
        self.agreement = Agreement(counted_from)
        self.seconds = {"float32": 0.0, "other": 0.0}

    box_threshold = property(lambda self: self.detector.box_threshold)
    config = property(lambda self: self.detector.config)
    device = property(lambda self: self.detector.device)
    description = property(lambda self: self.detector.description)
    dtype = property(lambda self: self.detector.dtype)

    def set_prompt(self, prompt: str) -> list[str]:
        self.float32_detector.set_prompt(prompt)
        return self.detector.set_prompt(prompt)

    def detect(self, images, box_threshold: float | None = None) -> list[Detections]:
        threshold = self.detector.box_threshold if box_threshold is None else box_threshold
        start = time.perf_counter()
        found = self.detector.detect(images, box_threshold=threshold)
        middle = time.perf_counter()
        float32 = self.float32_detector.detect(images, box_threshold=threshold)
        self.seconds["other"] += middle - start
        self.seconds["float32"] += time.perf_counter() - middle
        for float32_found, other in zip(float32, found):
            self.agreement.add(float32_found, other)
        return found
