"""A detector at an uneven pace, as on the node, for evaluation: which frames it takes, and the trackers on them.

The node takes a camera's newest frame whenever its detector is free and drops the frames that arrive while it
works, so a camera's tracker sees an uneven subset of the frames (perception.streams). ``DetectorPace`` draws
such a subset: from each frame taken, the next is a whole number of frames later drawn uniformly from
``shortest`` to ``longest``. The trackers see only the frames taken: ours as the node feeds it
(``ObjectTracker.update_at_detector_pace``), a baseline once per frame taken (a plain node's loop); each is
scored on those frames by the boxes it matched in them (what the node publishes).

On a live camera (and in the evaluation at a pace), :class:`StepRateCheck` tells when the tracker's steps between
the detector's runs (``TrackerConfig.frame_rate``) are coarser than the camera's frames while the detector keeps up
with it: the tracker then steps at the camera's rate (``ObjectTracker.step_at``, with ``step_at_camera_rate``), and
back at ``frame_rate`` when the detector falls behind.
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
# The detector keeps up when this share of its latest runs (at most _CHECKED_RUNS) came at most KEEPS_UP_FRAMES
# after the one before: a share, not the mean, so that a few early runs of a detector taking every 3rd-12th frame
# rarely pass for one that keeps up (the mean of four such gaps is at most 6 one time in six). Once the tracker
# steps at the camera's rate, it goes back to frame_rate only below _STAYS_SHARE (a share near the bound does not
# flip it to and fro; each change rescales every track).
_KEEPS_UP_SHARE = 0.9
_STAYS_SHARE = 0.75
# It judges once the latest runs are at least _FEWEST_RUNS spanning at least _CHECKED_FRAMES camera frames (about
# 0.4 s at 25-30 fps): stepping at the camera's rate from then on kept most of what stepping so from the start
# gained (tuning trajectories 0 and 1000, every 2nd-6th frame: 83 and 87 switches against 61 and 84; waiting for
# 30 frames, 96 and 98; the defaults 127 and 118).
_CHECKED_RUNS = 32
_FEWEST_RUNS = 4
_CHECKED_FRAMES = 10
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
    """Our tracker on the frames taken (their detections in order), as the node runs it (stepping at the camera's
    rate once :class:`StepRateCheck` finds it should, with ``step_at_camera_rate``); returns the tracks matched in
    each frame taken."""
    check = StepRateCheck(tracker.config) if tracker.config.step_at_camera_rate else None
    matched = []
    for index, found in zip(taken, detections):
        time = index / frame_rate
        tracks = tracker.update_at_detector_pace(found, frame_at(index), time, start_threshold)
        matched.append([track for track in tracks if track.matched])
        camera = None if check is None else check.taken(time, index)
        if camera is not None:
            tracker.step_at(camera.step_rate(check.config))
    return matched


@dataclass(frozen=True)
class CameraRate:
    """What :class:`StepRateCheck` found of a camera: its rate, its detector's pace, and whether its tracker should
    step at the camera's rate (faster than ``TrackerConfig.frame_rate``, and the detector keeps up with it)."""

    frame_rate: float  # the camera's frames per second
    frames_per_run: float  # camera frames per run of the detector, on average
    keeps_up: bool  # the tracker should step at the camera's rate; False: at TrackerConfig.frame_rate

    def hit_counter_max(self, config: TrackerConfig) -> int:
        """config's hit_counter_max in steps at the camera's rate: the same seconds."""
        return config.at_frame_rate(self.frame_rate).hit_counter_max

    def step_rate(self, config: TrackerConfig) -> float:
        """The rate the tracker of a stream configured so should step at now."""
        return self.frame_rate if self.keeps_up else config.frame_rate

    def change(self, config: TrackerConfig) -> str:
        """What the node logs when its tracker changes its steps so."""
        if not self.keeps_up:
            return (f"the detector now takes one in {self.frames_per_run:.2g} of the camera's {self.frame_rate:.3g} "
                    f"frames a second: the tracker steps at tracking.frame_rate {config.frame_rate:g} again (slower "
                    "detectors tracked better so; README, Tracking)")
        return (f"{self._pace()}: the tracker now steps at {self.frame_rate:.3g} (hit_counter_max "
                f"{self.hit_counter_max(config)}, the same {config.hit_counter_max / config.frame_rate:g} s), not at "
                f"tracking.frame_rate {config.frame_rate:g}, whose steps would round each gap between the detector's "
                "runs (README, Tracking; tracking.step_at_camera_rate false keeps tracking.frame_rate)")

    def advice(self, config: TrackerConfig) -> str:
        """What the node logs instead, once, with ``step_at_camera_rate`` off."""
        return (f"{self._pace()}, but the tracker steps between its runs at tracking.frame_rate {config.frame_rate:g}, "
                f"rounding each gap to whole steps: set tracking.frame_rate to {self.frame_rate:.3g} and "
                f"tracking.hit_counter_max to {self.hit_counter_max(config)} (the same "
                f"{config.hit_counter_max / config.frame_rate:g} s), or tracking.step_at_camera_rate true, for fewer "
                "identity switches (README, Tracking)")

    def _pace(self) -> str:
        return (f"the camera delivers {self.frame_rate:.3g} frames a second and the detector takes one in "
                f"{self.frames_per_run:.2g}")


class StepRateCheck:
    """Whether a camera's tracker should step at the camera's rate rather than at ``config.frame_rate``.

    Fed, for each frame the detector takes, its time (seconds) and its index among all the frames the camera
    delivered (the frames dropped while the detector was busy included). At the detector's pace the tracker steps
    through the time between two runs in frames of ``config.frame_rate`` and rounds the gap to whole ones (at 10,
    a gap of 1 and of 4 frames of a 30 fps camera are both one step). Correcting only the filters' predicted
    positions for that rounding changed nothing (tuning trajectories 0 and 1000 at every 2nd-6th frame: 125 and
    112 switches against 127 and 118); stepping at the camera's rate, counters included, halved the switches.
    Judged on the detector's latest runs: the camera's frame interval is their gaps' median (a pause in the stream
    does not count), whether the detector keeps up by the share of its gaps of at most KEEPS_UP_FRAMES.
    """

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config  # the stream's: its frame_rate is the tracker's steps unless the camera's are chosen
        self._gaps: deque[tuple[float, int]] = deque(maxlen=_CHECKED_RUNS)  # (seconds per frame, frames) per gap
        self._last: tuple[float, int] | None = None  # (time, index) of the latest frame taken
        self.camera: CameraRate | None = None  # the camera whose rate the tracker steps at; None: config.frame_rate

    def taken(self, time: float, index: int) -> CameraRate | None:
        """The detector took the camera's frame ``index`` (0, 1, ... in delivery order), taken at ``time``. Returns
        a CameraRate when the tracker should change its steps: to the camera's rate (``keeps_up``) once the
        detector's latest runs span enough frames to tell that the camera is faster than ``frame_rate`` and that
        the detector drops some of its frames but takes nearly always at least every KEEPS_UP_FRAMES-th; back to
        ``frame_rate`` once it no longer does so often enough (a detector slowed by load) or the camera is no faster.
        Else None."""
        if self._last is not None:
            frames, seconds = index - self._last[1], time - self._last[0]
            if frames > 0 and seconds > 0:
                self._gaps.append((seconds / frames, frames))
            else:  # the stream started again (a new publisher, a bag replayed): judge it afresh
                self._gaps.clear()
        self._last = (time, index)
        camera = self._judged()
        if camera is None or camera.keeps_up == (self.camera is not None):
            return None
        self.camera = camera if camera.keeps_up else None
        return camera

    def _judged(self) -> CameraRate | None:
        frames = sum(gap for _, gap in self._gaps)
        if frames < _CHECKED_FRAMES or len(self._gaps) < _FEWEST_RUNS or frames == len(self._gaps):
            return None  # too few to tell; or taking every frame, stepped once per frame at either rate
        camera_rate = 1.0 / float(np.median([interval for interval, _ in self._gaps]))
        frames_per_run = frames / len(self._gaps)
        within = sum(gap <= KEEPS_UP_FRAMES for _, gap in self._gaps) / len(self._gaps)
        least = _STAYS_SHARE if self.camera is not None else _KEEPS_UP_SHARE
        keeps_up = camera_rate >= _FASTER * self.config.frame_rate and within >= least
        return CameraRate(camera_rate, frames_per_run, keeps_up)
