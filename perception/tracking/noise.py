"""Ground truth corrupted to look like a detector's output, so `gdino eval tracking --detections noisy-truth`
scores trackers alone.

Per frame and visible object: the box with each corner jittered, or a miss (independent single-frame
misses, and dropouts: runs of consecutive misses of one object); plus false positives in proportion to the
objects in view. Scores follow visibility as a detector's do: a partly hidden object scores low (below
:data:`NOISY_TRUTH_BOX_THRESHOLD` when less than about a third of it shows), which is what ByteTrack's
second association and our continue_threshold are for; false positives score between the box threshold
and 0.6, below most true boxes. Optionally, a detected object also gets a weak second box, as a model trained
on crowds reports: the case a tracker must not let take someone's track.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from perception.training.synthetic import TrackedObject
from perception.types import Detections

# The box threshold a noisy-truth "detector" runs at: detections scored below it only continue tracks.
NOISY_TRUTH_BOX_THRESHOLD = 0.35
_FALSE_POSITIVE_MAX_SCORE = 0.6
_SCORE_NOISE = 0.05  # standard deviation around 0.1 + 0.8 * visibility
# Second boxes score from the tracker's default continue_threshold up to the box threshold: low enough to start
# nothing, high enough to continue a track.
_SECOND_BOX_MIN_SCORE = 0.25


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class NoiseConfig:
    """How ground truth is corrupted; the defaults are the issue's simulated detector."""

    # Standard deviation of each box corner's offset, as a fraction of the box's width (x) or height (y).
    jitter: float = 0.05
    miss_rate: float = 0.1  # chance that a visible object is missed in a frame, independently of other frames
    dropout_rate: float = 0.02  # chance per frame that a visible object starts a dropout
    dropout_frames: int = 3  # frames a dropout lasts (the object is missed in each, visible or not)
    # Mean false positives per frame as a fraction of the objects in view (Poisson): 0.05 with 10 people is
    # one every other frame. Each is the size and phrase of a random object of the frame, anywhere in it.
    false_positives: float = 0.05
    min_visibility: float = 0.2  # objects showing less of themselves than this are never detected
    # Chance that a detected object also gets a second box, jittered on its own and scored under the box
    # threshold. 0 is the detector; the crowd-stage model (train_bundled --stage crowds) on crowd
    # videos reports about 0.3 such boxes (scored 0.25-0.35, IoU >= 0.5 with the object) per object its sure
    # boxes find, its own further off the object (IoU 0.81 against 0.87 for its sure boxes) and more often
    # reaching a neighbour than these.
    second_boxes: float = 0.0

    def __post_init__(self) -> None:
        _check(0 <= self.jitter <= 0.5, f"noise jitter must be in [0, 0.5] (of the box size); got {self.jitter}")
        _check(0 <= self.miss_rate < 1, f"noise miss_rate must be in [0, 1); got {self.miss_rate}")
        _check(0 <= self.dropout_rate < 1, f"noise dropout_rate must be in [0, 1); got {self.dropout_rate}")
        _check(1 <= self.dropout_frames <= 1000,
               f"noise dropout_frames must be in [1, 1000]; got {self.dropout_frames}")
        _check(0 <= self.false_positives <= 10,
               f"noise false_positives must be in [0, 10] (per object in view); got {self.false_positives}")
        _check(0 <= self.min_visibility <= 1, f"noise min_visibility must be in [0, 1]; got {self.min_visibility}")
        _check(0 <= self.second_boxes <= 1, f"noise second_boxes must be in [0, 1]; got {self.second_boxes}")

    def as_dict(self) -> dict:
        return asdict(self)


class NoisyTruth:
    """One video's ground truth as a detector might report it, frame after frame (a dropout spans frames).

    size: the frames' (height, width); rng: the video's generator, drawn in frame order.
    """

    def __init__(self, noise: NoiseConfig, size: tuple[int, int], rng: np.random.Generator) -> None:
        self.noise, self.size, self.rng = noise, size, rng
        self._dropout_left: dict[int, int] = {}  # frames of a running dropout still to come, by track id

    def _missed(self, item: TrackedObject) -> bool:
        """Whether a visible object goes undetected in this frame (counting down its dropout)."""
        left = self._dropout_left.pop(item.track_id, 0)
        if left == 0 and self.rng.uniform() < self.noise.dropout_rate:
            left = self.noise.dropout_frames
        if left > 0:
            if left > 1:
                self._dropout_left[item.track_id] = left - 1
            return True
        return self.rng.uniform() < self.noise.miss_rate

    def _jittered(self, objects: list[TrackedObject]) -> np.ndarray:
        """The objects' true boxes with each corner moved by the jitter (a fraction of the box's size)."""
        boxes = np.array([item.box for item in objects], np.float64).reshape(-1, 4)
        sizes = np.tile(boxes[:, 2:] - boxes[:, :2], 2)  # (w, h, w, h)
        return boxes + self.rng.normal(0.0, self.noise.jitter, boxes.shape) * sizes

    def __call__(self, objects: list[TrackedObject]) -> Detections:
        """The detections of the next frame, whose ground truth is `objects`."""
        height, width = self.size
        shown = {item.track_id for item in objects if item.visibility >= self.noise.min_visibility}
        # Dropouts run on while their object is hidden or out of view.
        for track_id in [key for key in self._dropout_left if key not in shown]:
            self._dropout_left[track_id] -= 1
            if self._dropout_left[track_id] == 0:
                del self._dropout_left[track_id]
        seen = [item for item in objects if item.track_id in shown and not self._missed(item)]
        boxes = self._jittered(seen)
        visibility = np.array([item.visibility for item in seen])
        scores = 0.1 + 0.8 * visibility + self.rng.normal(0.0, _SCORE_NOISE, len(seen))
        phrases = [item.phrase for item in seen]
        spurious = self.rng.poisson(self.noise.false_positives * len(objects)) if objects else 0
        for _ in range(spurious):
            model = objects[int(self.rng.integers(len(objects)))]
            box_width, box_height = (model.box[2] - model.box[0], model.box[3] - model.box[1])
            x0, y0 = self.rng.uniform(0, width - box_width), self.rng.uniform(0, height - box_height)
            boxes = np.vstack([boxes, [x0, y0, x0 + box_width, y0 + box_height]])
            scores = np.append(scores, self.rng.uniform(NOISY_TRUTH_BOX_THRESHOLD, _FALSE_POSITIVE_MAX_SCORE))
            phrases.append(model.phrase)
        if self.noise.second_boxes:  # drawn last and only when asked, so the detector draws as before
            doubled = [item for item in seen if self.rng.uniform() < self.noise.second_boxes]
            boxes = np.vstack([boxes, self._jittered(doubled)])
            weak = self.rng.uniform(_SECOND_BOX_MIN_SCORE, NOISY_TRUTH_BOX_THRESHOLD, len(doubled))
            scores = np.append(scores, weak)
            phrases += [item.phrase for item in doubled]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return Detections(boxes=boxes, scores=scores.clip(0.01, 0.99), labels=phrases)
