"""What the tracker remembers of one object: its reported id, phrases, and recent sightings in time.

Positions are kept twice: in absolute coordinates (norfair's; the first frame's when camera motion is
compensated) for where the object went, and in image coordinates for which image border it touched.
Speed and direction come only from the object's full-size boxes: the box of an object going behind
something shrinks to its visible part, and its centre then moves the wrong way.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
import torch

from perception.boxes import box_iou
from perception.tracking.gates import STEADY_PAIRS

# Sightings kept per object: the last _HISTORY_SECONDS of them, at most _HISTORY_SIGHTINGS, at least 2.
_HISTORY_SECONDS = 1.0
_HISTORY_SIGHTINGS = 30
# A box counts as full-size when its area is at least this fraction of the largest recent box's.
_FULL_SIZE = 0.7
# A box touches an image border when it reaches within this fraction of its own size of it.
_BORDER_REACH = 0.05
# Where a lost track was last seen counts as at a border within this larger fraction: the detector's box edges
# jitter by more than _BORDER_REACH, so an object last seen a few pixels short of a border and a new track
# entering there may well be one (bundled model, float32, default videos of 12 tuning seeds: identity switches
# 44 -> 41; crowds of noisy truth, seeds 0-500: 45 -> 44). The same larger reach for the new track's entry too
# (the lenient side both ways, 0.2) made 73 switches against 65.
LAST_SEEN_BORDER_REACH = 0.25


@dataclass(frozen=True)
class Sighting:
    time: float  # seconds
    box: np.ndarray  # (4,) xyxy, absolute coordinates
    image_box: np.ndarray  # (4,) xyxy, pixels of the frame it was seen in
    look: np.ndarray | None  # appearance histogram, None when appearance is off


def centre(box: np.ndarray) -> np.ndarray:
    return (box[..., :2] + box[..., 2:]) / 2


def area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Area of the intersection of two xyxy boxes."""
    return float(max(min(first[2], second[2]) - max(first[0], second[0]), 0.0)
                 * max(min(first[3], second[3]) - max(first[1], second[1]), 0.0))


def touched_borders(box: np.ndarray, frame_size: tuple[int, int] | None,
                    within: float = _BORDER_REACH) -> frozenset[str]:
    """Image borders ("left", "top", "right", "bottom") that an image-coordinate box reaches (within ``within``
    of its own size)."""
    if frame_size is None:
        return frozenset()
    height, width = frame_size
    reach = within * np.sqrt(max(area(box), 1.0))
    x0, y0, x1, y1 = box
    near = {"left": x0 <= reach, "top": y0 <= reach, "right": x1 >= width - reach, "bottom": y1 >= height - reach}
    return frozenset(side for side, hit in near.items() if hit)


class TrackHistory:
    """One norfair object's memory; ``track_id`` is set once it is reported (fresh or re-identified)."""

    def __init__(self, key: str, first_frame: int, first_time: float) -> None:
        self.key = key  # association key (see perception.tracking.association)
        self.track_id: int | None = None
        self.first_frame = first_frame  # frame index of the identity's first detection (for Track.age)
        self.first_time = first_time  # seconds, first detection of this norfair object
        self.sightings: deque[Sighting] = deque(maxlen=_HISTORY_SIGHTINGS)
        self.phrases: Counter[str] = Counter()
        self.last_phrase = ""
        self.frame_size: tuple[int, int] | None = None  # (height, width) of the frame of the last sighting
        self.last_frame = first_frame  # frame index of the last sighting
        # IoU of each of the latest pairs of its boxes seen in consecutive frames (absolute coordinates), oldest first
        self.steadiness: deque[float] = deque(maxlen=STEADY_PAIRS)

    def see(self, sighting: Sighting, phrase: str, frame_size: tuple[int, int] | None, frame: int) -> None:
        if self.sightings and frame == self.last_frame + 1:
            pair = torch.from_numpy(np.stack([self.sightings[-1].box, sighting.box]))
            self.steadiness.append(float(box_iou(pair[:1], pair[1:])))
        self.last_frame = frame
        self.sightings.append(sighting)
        while len(self.sightings) > 2 and sighting.time - self.sightings[0].time > _HISTORY_SECONDS:
            self.sightings.popleft()
        self.phrases[phrase] += 1
        self.last_phrase = phrase
        self.frame_size = frame_size

    def take_over(self, lost: TrackHistory) -> None:
        """Continue ``lost``'s identity: its id, age and phrases; its sightings come before ours."""
        self.track_id, self.first_frame = lost.track_id, lost.first_frame
        self.phrases = lost.phrases + self.phrases
        older = [s for s in lost.sightings if s.time < self.sightings[0].time] if self.sightings else list(lost.sightings)
        self.sightings = deque(older + list(self.sightings), maxlen=_HISTORY_SIGHTINGS)

    @property
    def label(self) -> str:
        """The phrase matched most often (ties go to the most recent)."""
        return max(self.phrases, key=lambda phrase: (self.phrases[phrase], phrase == self.last_phrase))

    @property
    def boxes_seen(self) -> int:
        """Boxes matched to the identity so far (a re-identified one's included)."""
        return sum(self.phrases.values())

    @property
    def last_time(self) -> float:
        return self.sightings[-1].time

    @property
    def size(self) -> float:
        """Square root of the largest recent box's area, pixels."""
        return max(np.sqrt(max(area(s.box) for s in self.sightings)), 1.0)

    def full_sightings(self) -> list[Sighting]:
        largest = max(area(s.box) for s in self.sightings)
        return [s for s in self.sightings if area(s.box) >= _FULL_SIZE * largest]

    def velocity(self, image: bool = False) -> np.ndarray:
        """(2,) centre velocity in pixels per second from the full-size boxes (least squares), zeros if unknown."""
        full = self.full_sightings()
        times = np.array([s.time for s in full])
        if len(full) < 2 or np.ptp(times) <= 0:
            return np.zeros(2)
        centres = centre(np.stack([s.image_box if image else s.box for s in full]))
        offsets = times - times.mean()
        return (offsets[:, None] * (centres - centres.mean(axis=0))).sum(axis=0) / (offsets ** 2).sum()

    def predicted(self, time: float, image: bool = False) -> np.ndarray:
        """(4,) xyxy: the last full-size box moved along the velocity to ``time`` (absolute coordinates, or
        those of the image it was last seen in)."""
        anchor = self.full_sightings()[-1]
        shift = self.velocity(image) * max(time - anchor.time, 0.0)
        return (anchor.image_box if image else anchor.box) + np.tile(shift, 2)

    def left_through(self, time: float) -> frozenset[str]:
        """Image borders the object has left through by ``time``: it was last seen touching them while moving
        out, or its predicted box is by then more than half beyond them."""
        if self.frame_size is None:
            return frozenset()
        height, width = self.frame_size
        velocity = self.velocity(image=True)
        # Moving out: at least a tenth of its size per second towards the border.
        outward = {"left": -velocity[0], "top": -velocity[1], "right": velocity[0], "bottom": velocity[1]}
        leaving = {side for side in touched_borders(self.sightings[-1].image_box, self.frame_size)
                   if outward[side] > 0.1 * self.size}
        x0, y0, x1, y1 = self.predicted(time, image=True)
        middle_x, middle_y = (x0 + x1) / 2, (y0 + y1) / 2
        beyond = {"left": middle_x < 0, "top": middle_y < 0, "right": middle_x > width, "bottom": middle_y > height}
        return frozenset(leaving | {side for side, out in beyond.items() if out})
