"""Detection and tracking of several image streams with one detector: the step the ROS node and
`gdino bag` share.

Frames of any streams go through the model together as one batch; each stream keeps its own tracker,
fed in the order its frames arrive. The result for a frame is a list of :class:`LabeledBox`, boxes xyxy
in pixels of that frame, ``object_id`` the track id ("" when tracking is off). A frame the detector
refuses (a malformed or unusable image) gets its error instead of objects; the other frames of its batch
are still answered, and its stream's tracker does not see it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from perception.types import Detections

if TYPE_CHECKING:  # tracking (and norfair) is imported only when a tracker is asked for: detection needs neither
    from perception.tracking import ObjectTracker
    from perception.tracking.config import TrackerConfig

logger = logging.getLogger(__name__)

# What a detector raises for one unusable image (bad shape or dtype, a size the model cannot take).
FRAME_ERRORS = (ValueError, TypeError, RuntimeError)


@dataclass(frozen=True)
class LabeledBox:
    """One object in one frame: phrase, score in [0, 1], (4,) float32 xyxy pixel box, persistent id."""

    label: str
    score: float
    box_xyxy: np.ndarray
    object_id: str


@dataclass(frozen=True)
class BatchResult:
    """Per input frame (same order as the input): its objects, or None and its error when it was refused;
    and the model's own time for the batch."""

    objects: list[list[LabeledBox] | None]
    errors: list[Exception | None]
    model_seconds: float


def _untracked(detections: Detections) -> list[LabeledBox]:
    return [
        LabeledBox(label, float(score), box, "")
        for box, score, label in zip(detections.boxes, detections.scores, detections.labels)
    ]


def detect_each(detector, images: Sequence, box_threshold: float | None, prompt_updates=None
                ) -> tuple[list[Detections | None], list[Exception | None]]:
    """Detections per image as one batch; if the batch fails, each image on its own, so an image the
    detector refuses costs only itself (its error takes its place). A detector that answers a batch with
    the wrong number of results is broken, not refusing a frame: RuntimeError, never retried.
    prompt_updates: passed on to the detector (perception.detector.PromptUpdates) for the batch, not for the
    one-by-one retries: a change waits for the next call rather than answer one batch with two prompts."""
    extra = {} if prompt_updates is None else {"prompt_updates": prompt_updates}
    try:
        detections = detector.detect(images, box_threshold=box_threshold, **extra)
    except FRAME_ERRORS as error:
        if len(images) == 1:
            return [None], [error]
        logger.debug("a batch of %d frames failed (%s); detecting them one by one", len(images), error)
    else:
        if len(detections) != len(images):
            raise RuntimeError(f"the detector returned {len(detections)} results for {len(images)} images")
        return list(detections), [None] * len(images)
    # One by one, the prompt stays: a change between two of these images would answer one batch with two prompts.
    results = [detect_each(detector, [image], box_threshold) for image in images]
    return [found[0] for found, _ in results], [errors[0] for _, errors in results]


class MultiStreamDetector:
    """One detector for many streams; one tracker per stream when ``tracker_config`` is given.

    detector: anything with ``set_prompt(prompt) -> list[str]`` and ``detect(list of (H, W, 3) uint8 RGB)
    -> list[Detections]`` (``perception.detector.GroundingDinoDetector``). Not thread-safe: call it from
    one thread.
    """

    def __init__(self, detector, tracker_config: TrackerConfig | None) -> None:
        self.detector = detector
        self.tracker_config = tracker_config
        self._trackers: dict[str, ObjectTracker] = {}
        self._stream_times: dict[str, float] = {}  # per stream, the time its tracker saw last, seconds
        self._phrases: list[str] | None = None

    @property
    def phrases(self) -> list[str] | None:
        """The current prompt's phrases, None before the first :meth:`set_prompt`."""
        return self._phrases

    def set_prompt(self, prompt: str) -> list[str]:
        """Set the prompt for every stream (text is encoded by the detector once per distinct prompt)."""
        phrases = list(self.detector.set_prompt(prompt))
        for tracker in self._trackers.values():
            tracker.set_phrases(phrases)
        self._phrases = phrases
        return phrases

    def process(self, frames: Sequence[tuple[str, np.ndarray]],
                timestamps: Sequence[float | None] | None = None, prompt_updates=None) -> BatchResult:
        """Detect on all ``(stream, rgb)`` frames as one batch, then track each in input order.

        A stream may appear several times (consecutive frames of one video); its tracker then sees
        them in the given order. timestamps: per frame, its capture time in seconds (a camera's stamp),
        or None where it has none; the trackers measure their windows in these seconds (see
        :meth:`_stream_time` for missing and backward stamps). prompt_updates: prompt changes that may
        arrive while the frames are in the model (perception.detector.PromptUpdates; its ``apply_pending``
        calls :meth:`set_prompt`, so the trackers see the phrases the batch was answered with).
        """
        if self._phrases is None:
            raise RuntimeError("MultiStreamDetector.process called before set_prompt")
        start = time.perf_counter()
        box_threshold = self.detector.box_threshold
        # With a tracker the detector reports down to the tracker's floor (None: its own threshold).
        floor = None
        if self.tracker_config is not None:
            from perception.tracking import detection_floor

            floor = detection_floor(box_threshold, self.tracker_config)
        detections, errors = detect_each(self.detector, [rgb for _, rgb in frames], floor, prompt_updates)
        model_seconds = time.perf_counter() - start
        if self.tracker_config is None:
            objects = [None if d is None else _untracked(d) for d in detections]
            return BatchResult(objects, errors, model_seconds)
        objects = []
        stamps = [None] * len(frames) if timestamps is None else list(timestamps)
        for (stream, rgb), frame_detections, stamp in zip(frames, detections, stamps):
            if frame_detections is None:
                objects.append(None)
                continue
            # Frames arrive at the detector's pace: the tracker first steps through the frames it did not see.
            # It reads the frame for camera-motion compensation and the appearance of boxes.
            tracks = self._tracker(stream).update_at_detector_pace(frame_detections, rgb,
                                                                   self._stream_time(stream, stamp), box_threshold)
            objects.append(
                [LabeledBox(t.label, t.score, t.box_xyxy, str(t.track_id)) for t in tracks if t.matched]
            )
        return BatchResult(objects, errors, model_seconds)

    def step_tracker_at(self, stream: str, frame_rate: float) -> None:
        """Step a stream's tracker at ``frame_rate`` from now on (perception.tracking.pace.StepRateCheck)."""
        self._tracker(stream).step_at(frame_rate)

    def _stream_time(self, stream: str, stamp: float | None) -> float:
        """The time a stream's tracker gets for a frame (perception.tracking.frames.stream_time)."""
        from perception.tracking.frames import stream_time

        now = stream_time(self._stream_times.get(stream), stamp, self.tracker_config.frame_rate)
        self._stream_times[stream] = now
        return now

    def _tracker(self, stream: str) -> ObjectTracker:
        tracker = self._trackers.get(stream)
        if tracker is None:
            from perception.tracking import ObjectTracker

            tracker = self._trackers[stream] = ObjectTracker(self.tracker_config)
            tracker.set_phrases(self._phrases)
        return tracker
