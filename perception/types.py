"""Plain result types that cross the boundary between the detector, the tracker, the video
pipeline and the ROS node. Boxes are always xyxy in pixels of the original image."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """Detections of one image.

    boxes: (N, 4) float32, xyxy in pixels of the original image (x to the right, y down).
    scores: (N,) float32 in [0, 1], the best token probability of the box within its phrase.
    labels: N phrase strings, as written in the prompt ("red mug"), "" when no phrase passed
        the text threshold.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise ValueError(
                f"Detections fields disagree in length: {len(self.boxes)} boxes, "
                f"{len(self.scores)} scores, {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.scores)
