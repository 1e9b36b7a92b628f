"""A detector at an uneven pace, as on the node, for evaluation: which frames it takes, and the trackers on them.

The node takes a camera's newest frame whenever its detector is free and drops the frames that arrive while it
works, so a camera's tracker sees an uneven subset of the frames (perception.streams). ``DetectorPace`` draws
such a subset: from each frame taken, the next is a whole number of frames later drawn uniformly from
``shortest`` to ``longest``. The trackers see only the frames taken: ours as the node feeds it
(``ObjectTracker.update_at_detector_pace``), a baseline once per frame taken (a plain node's loop); each is
scored on those frames by the boxes it matched in them (what the node publishes).

On a live camera, :class:`StepRateCheck` tells when the tracker's steps between the detector's runs
(``TrackerConfig.frame_rate``) are coarser than the camera's frames while the detector keeps up with it, and what
to set instead.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from perception.tracking.config import TrackerConfig
from perception.tracking.tracker import ObjectTracker, Track
from perception.types import Detections

# A detector taking at least every this-many-th frame of a camera keeps up with it: stepping its tracker at the
# camera's rate made fewer identity switches there (fresh real 25 fps trajectories, the detector taking every 1st-4th
# and 2nd-6th frame), and a lower IDF1 with slower detectors (every 3rd-12th, 10th-30th). README, Tracking.
KEEPS_UP_FRAMES = 6
# Camera frames the detector's latest runs (at most _CHECKED_RUNS) must span before the check says anything (1 s
# at 30 fps).
_CHECKED_FRAMES = 30
_CHECKED_RUNS = 32
# A camera is faster than the tracker's steps from this ratio of their rates on (below: the stamps' jitter).
_FASTER = 1.1


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


class StepRateCheck:
    """Whether a camera's tracker should step at the camera's rate rather than at ``config.frame_rate``.

    Fed, for each frame the detector takes, its time (seconds) and its index among all the frames the camera
    delivered (the frames dropped while the detector was busy included). At the detector's pace the tracker steps
    through the time between two runs in frames of ``config.frame_rate`` and rounds the gap to whole ones (at 10,
    a gap of 1 and of 4 frames of a 30 fps camera are both one step), so its filter misjudges how far objects moved.
    Judged on the detector's latest runs: the camera's frame interval is their gaps' median (a pause in the stream
    does not count), the detector's pace their mean in frames.
    """

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._gaps: deque[tuple[float, int]] = deque(maxlen=_CHECKED_RUNS)  # (seconds per frame, frames) per gap
        self._last: tuple[float, int] | None = None  # (time, index) of the latest frame taken

    def taken(self, time: float, index: int) -> None:
        """The detector took the camera's frame ``index`` (0, 1, ... in delivery order), taken at ``time``."""
        if self._last is not None:
            frames, seconds = index - self._last[1], time - self._last[0]
            if frames > 0 and seconds > 0:
                self._gaps.append((seconds / frames, frames))
            else:  # the stream started again (a new publisher, a bag replayed): judge it afresh
                self._gaps.clear()
        self._last = (time, index)

    def advice(self) -> str | None:
        """What to set, once the detector's latest runs span enough frames to tell, when the camera is faster than
        ``frame_rate`` and the detector drops some of its frames but takes at least every KEEPS_UP_FRAMES-th; else
        None."""
        frames = sum(gap for _, gap in self._gaps)
        if frames < _CHECKED_FRAMES:
            return None
        camera_rate = 1.0 / float(np.median([interval for interval, _ in self._gaps]))
        frames_per_run = frames / len(self._gaps)
        if camera_rate < _FASTER * self.config.frame_rate or frames_per_run > KEEPS_UP_FRAMES:
            return None
        if frames == len(self._gaps):
            return None  # taking every frame, the tracker steps once per camera frame: nothing is rounded
        hit_counter_max = round(self.config.hit_counter_max * camera_rate / self.config.frame_rate)
        return (f"the camera delivers {camera_rate:.3g} frames a second and the detector takes one in "
                f"{frames_per_run:.2g}, but the tracker steps between its runs at tracking.frame_rate "
                f"{self.config.frame_rate:g}, rounding each gap to whole steps: set tracking.frame_rate to "
                f"{camera_rate:.3g} and tracking.hit_counter_max to {hit_counter_max} (the same "
                f"{self.config.hit_counter_max / self.config.frame_rate:g} s) for fewer identity switches "
                "(README, Tracking)")
