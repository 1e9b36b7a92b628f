"""A detector at an uneven pace, as on the node, for evaluation: which frames it takes, and the trackers on them.

The node takes a camera's newest frame whenever its detector is free and drops the frames that arrive while it
works, so a camera's tracker sees an uneven subset of the frames (perception.streams). ``DetectorPace`` draws
such a subset: from each frame taken, the next is a whole number of frames later drawn uniformly from
``shortest`` to ``longest``. The trackers see only the frames taken: ours as the node feeds it
(``ObjectTracker.update_at_detector_pace``), a baseline once per frame taken (a plain node's loop); each is
scored on those frames by the boxes it matched in them (what the node publishes).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from perception.tracking.tracker import ObjectTracker, Track
from perception.types import Detections


@dataclass(frozen=True)
class DetectorPace:
    shortest: int  # frames from one frame the detector takes to the next, at least
    longest: int  # and at most

    def __post_init__(self) -> None:
        if not 1 <= self.shortest <= self.longest <= 1000:
            raise ValueError("detector pace must be SHORTEST-LONGEST frames between two frames the detector takes, "
                             f"with 1 <= SHORTEST <= LONGEST <= 1000; got {self.shortest}-{self.longest}")

    @classmethod
    def parse(cls, text: str) -> DetectorPace:
        """From "N" (every N-th frame) or "SHORTEST-LONGEST"."""
        parts = text.split("-")
        try:
            if len(parts) not in (1, 2):
                raise ValueError
            values = [int(part) for part in parts]
        except ValueError:
            raise ValueError(f"detector pace must be N or SHORTEST-LONGEST (frames, e.g. 3-12); got {text!r}") from None
        return cls(values[0], values[-1])

    def as_list(self) -> list[int]:
        return [self.shortest, self.longest]

    def taken(self, length: int, rng: np.random.Generator) -> list[int]:
        """Indices of the frames the detector takes in a video of ``length`` frames; the first within the first
        ``shortest`` frames (the detector is busy with an earlier frame when a recording starts)."""
        index, taken = int(rng.integers(0, self.shortest)), []
        while index < length:
            taken.append(index)
            index += int(rng.integers(self.shortest, self.longest + 1))
        return taken


def track_at_pace(tracker: ObjectTracker, detections: list[Detections], taken: list[int],
                  frame_at: Callable[[int], np.ndarray], frame_rate: float,
                  start_threshold: float) -> list[list[Track]]:
    """Our tracker on the frames taken (their detections in order), as the node runs it; returns the tracks
    matched in each frame taken."""
    return [[track for track in tracker.update_at_detector_pace(found, frame_at(index), index / frame_rate,
                                                                start_threshold) if track.matched]
            for index, found in zip(taken, detections)]
