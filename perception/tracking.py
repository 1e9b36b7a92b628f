"""Multi-object tracking of detections over frames: a thin adapter over norfair.

One :class:`ObjectTracker` per stream (a video, a camera topic). Each ``update`` takes the
:class:`~perception.types.Detections` of one frame (boxes xyxy in pixels of that frame) and returns
the live :class:`Track` objects. Association is norfair's greedy matching on 1 - IoU (or corner
distance), gated by phrase: a "mug" detection never continues a "person" track unless the config
joins the two (``label_gating="prompt"`` or ``synonym_groups``). See :mod:`perception.tracking_config`
for every knob and the hit-counter arithmetic.

Boxes of one association key that overlap a better one by more than ``duplicate_iou`` are dropped
first, so one object cannot start two tracks. Low scores (``continue_threshold``, ByteTrack's second
association): the pipelines run the detector down to :func:`detection_floor` and pass the box
threshold as ``start_threshold``; a detection below it only continues a reported track of its phrase
that it overlaps and never starts one. Lost tracks can be re-identified (``reid_frames``): a new track
of the same phrase appearing where a lost one could have got to at its usual speed, or near where its
motion model puts it, takes over the lost track's id if its colours are alike (``reid_appearance``; the
tracker then needs each frame with its detections).

Frame skipping: when the detector runs only every ``period`` frames, call ``update(detections,
period=period)`` on the frames it ran and ``update(None)`` on the others; tracks then coast on their
Kalman prediction in between (norfair's ``period``).
"""
from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from norfair import Detection, Tracker
from norfair.camera_motion import HomographyTransformationGetter, MotionEstimator, TranslationTransformationGetter
from norfair.filter import NoFilterFactory, OptimizedKalmanFilterFactory

from perception.boxes import box_iou
from perception.postprocess import nms_keep
from perception.tracking_config import TrackerConfig
from perception.types import Detections

logger = logging.getLogger(__name__)

# Association key shared by every phrase when label_gating is "prompt"; phrase keys carry a prefix so
# that no phrase (not even "") can collide with it.
_ANY_PHRASE_KEY = "any"

# Matched boxes kept per track for re-identification: its size, typical speed and looks come from these.
_HISTORY = 10
# Appearance: a joint hue x saturation x value histogram of the middle of a box (its border is mostly
# background), compared by the Bhattacharyya coefficient (1 for equal histograms, 0 for disjoint ones).
_APPEARANCE_BINS = (8, 4, 4)
_APPEARANCE_MARGIN = 0.15  # fraction of the box's width and height left out on each side


def appearance(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Normalised colour histogram of the middle of ``box`` (xyxy pixels) in ``frame`` ((H, W, 3) uint8
    RGB), or None when no pixel of it is inside the frame."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * _APPEARANCE_MARGIN, (y1 - y0) * _APPEARANCE_MARGIN
    height, width = frame.shape[:2]
    left, top = max(int(math.floor(x0 + dx)), 0), max(int(math.floor(y0 + dy)), 0)
    right, bottom = min(int(math.ceil(x1 - dx)), width), min(int(math.ceil(y1 - dy)), height)
    if right <= left or bottom <= top:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[top:bottom, left:right]), cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, list(_APPEARANCE_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return histogram / histogram.sum()


def appearance_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Bhattacharyya coefficient of two normalised histograms, in [0, 1]."""
    return float(np.sqrt(first * second).sum())


def detection_floor(box_threshold: float, config: TrackerConfig) -> float:
    """Lowest score the detector should report when its detections feed a tracker with ``config``."""
    return min(box_threshold, config.continue_threshold) if config.continue_threshold > 0 else box_threshold


def _xyxy(points: np.ndarray) -> np.ndarray:
    """norfair's (2, 2) corner points as an (x0, y0, x1, y1) box, corners in either order."""
    (ax, ay), (bx, by) = points
    return np.array([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)])


@dataclass(frozen=True)
class Track:
    """One live track in one frame.

    box_xyxy: (4,) float32 in pixels of the current frame: the matched detection's box when
        ``matched``, else the filter's prediction (which may reach outside the frame).
    score: the score of the last detection matched to the track.
    label: the phrase the track was matched with most often (ties go to the most recent).
    age: frames since the track's first detection (0 on that frame).
    """

    track_id: int
    label: str
    score: float
    box_xyxy: np.ndarray
    age: int
    matched: bool


def _motion_estimator(config: TrackerConfig) -> MotionEstimator | None:
    motion = config.motion
    if not motion.enabled:
        return None
    getter = HomographyTransformationGetter() if motion.model == "homography" else TranslationTransformationGetter()
    return MotionEstimator(
        max_points=motion.max_points,
        min_distance=motion.min_distance,
        block_size=motion.block_size,
        transformations_getter=getter,
        quality_level=motion.quality_level,
    )


class ObjectTracker:
    """Tracks the detections of one stream; see the module docstring for the calling pattern."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        filter_factory = (
            OptimizedKalmanFilterFactory(R=self.config.kalman_measurement_noise, Q=self.config.kalman_process_noise)
            if self.config.filter == "kalman"
            else NoFilterFactory()
        )
        self._tracker = Tracker(
            distance_function=self.config.distance,
            distance_threshold=self.config.distance_threshold,
            hit_counter_max=self.config.hit_counter_max,
            initialization_delay=self.config.initialization_delay,
            filter_factory=filter_factory,
            past_detections_length=0,
            reid_distance_function=self._reid_distance if self.config.reid_frames else None,
            reid_distance_threshold=self.config.reid_distance,
            reid_hit_counter_max=self.config.reid_frames or None,
        )
        self._motion = _motion_estimator(self.config)
        self._synonyms = {phrase: frozenset(group) for group in self.config.synonym_groups for phrase in group}
        self._phrases: tuple[str, ...] | None = None
        # Per norfair object (keyed by its initializing_id, unique within the tracker): matched phrases.
        self._phrase_counts: dict[int, Counter[str]] = {}
        self._last_phrase: dict[int, str] = {}
        # Per norfair object: its last _HISTORY matches as (frame number, xyxy box, appearance or None).
        self._history: dict[int, deque[tuple[int, np.ndarray, np.ndarray | None]]] = {}
        self._frame = 0  # frames seen by update

    @property
    def phrases(self) -> tuple[str, ...] | None:
        """Phrases of the current prompt, None before the first :meth:`set_phrases`."""
        return self._phrases

    def set_phrases(self, phrases: Sequence[str]) -> None:
        """Tell the tracker the current prompt's phrases; on a change, apply ``config.on_prompt_change``.

        "reset" drops every track; "keep" keeps the tracks whose label, or a synonym of it, is a phrase
        of the new prompt. Ids keep counting either way, so an id never names two objects in a stream.
        """
        phrases = tuple(phrases)
        if self._phrases is not None and phrases != self._phrases:
            if self.config.on_prompt_change == "reset":
                kept = []
            else:
                new = set(phrases)
                kept = [obj for obj in self._tracker.tracked_objects if self._synonyms_of(self._label(obj)) & new]
            logger.debug("prompt changed: kept %d of %d tracks", len(kept), len(self._tracker.tracked_objects))
            self._tracker.tracked_objects = kept
            self._forget_dead_objects()
        self._phrases = phrases

    def update(self, detections: Detections | None, frame: np.ndarray | None = None, period: int = 1,
               start_threshold: float = 0.0) -> list[Track]:
        """Advance one frame.

        detections: this frame's detections, or None when the detector did not run on this frame.
        frame: (H, W, 3) uint8 RGB; required on every call when camera-motion compensation is enabled, and
            with detections when re-identification compares appearance (``reid_appearance``).
        period: frames since the detector last ran (its stride), in [1, hit_counter_max].
        start_threshold: the detector's box threshold; detections scored below it may only continue a
            reported track (and only with ``config.continue_threshold`` set; otherwise they are ignored).
        Returns the reported tracks (past their initialization delay), ordered by id.
        """
        if not 1 <= period <= self.config.hit_counter_max:
            raise ValueError(
                f"tracking period must be in [1, hit_counter_max] = [1, {self.config.hit_counter_max}] "
                f"(longer gaps delete every track); got {period}"
            )
        self._frame += 1
        transformation = None
        if self._motion is not None:
            if frame is None:
                raise ValueError("camera-motion compensation is enabled: pass the frame to every update")
            transformation = self._motion.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if detections is not None and frame is None and self.config.reid_appearance > 0:
            raise ValueError("re-identification compares appearance (reid_appearance > 0): pass the frame with "
                             "each frame's detections, or set reid_appearance to 0")
        candidates = [] if detections is None else self._without_duplicates(self._to_norfair(detections))
        self._join_wavering_phrases(candidates)
        low = [candidate for candidate in candidates if candidate.data["score"] < start_threshold]
        if low:
            candidates = [candidate for candidate in candidates if candidate.data["score"] >= start_threshold]
            candidates += self._continuing(low)
        if self.config.reid_appearance > 0:
            # Only for the detections norfair gets: duplicates and unused low scores never need it.
            for candidate in candidates:
                candidate.data["appearance"] = appearance(frame, _xyxy(candidate.points))
        existing = {id(obj) for obj in self._tracker.tracked_objects}
        # norfair iterates the list whenever a transformation is given, so an empty list stands for "none".
        active = self._tracker.update(candidates, period=period, coord_transformations=transformation)
        if low:
            # A low-scored detection that continued nothing started an object: it may not.
            started = {id(c) for c in low}
            self._tracker.tracked_objects = [
                obj for obj in self._tracker.tracked_objects
                if id(obj) in existing or id(obj.last_detection) not in started
            ]
            kept = {id(obj) for obj in self._tracker.tracked_objects}
            active = [obj for obj in active if id(obj) in kept]
        fresh = {id(candidate) for candidate in candidates}
        for obj in self._tracker.tracked_objects:
            if id(obj.last_detection) in fresh:
                # norfair (2.3) starts a track's re-identification countdown once its hit counter reaches 0
                # and never stops it when the track is matched again, so a track that once coasted to the
                # end of its hit counter was deleted reid_frames later in the middle of being tracked.
                obj.reid_hit_counter = None
                phrase = obj.last_detection.data["phrase"]
                self._phrase_counts.setdefault(obj.initializing_id, Counter())[phrase] += 1
                self._last_phrase[obj.initializing_id] = phrase
                history = self._history.setdefault(obj.initializing_id, deque(maxlen=_HISTORY))
                # Absolute points: where camera motion is compensated, in the first frame's coordinates.
                history.append((self._frame, _xyxy(obj.last_detection.absolute_points),
                                obj.last_detection.data.get("appearance")))
        self._forget_dead_objects()
        tracks = [self._to_track(obj, id(obj.last_detection) in fresh) for obj in active]
        return sorted(tracks, key=lambda track: track.track_id)

    def _without_duplicates(self, candidates: list[Detection]) -> list[Detection]:
        """Greedy per-key suppression: best score first, a detection overlapping a kept one of its key by
        more than config.duplicate_iou is dropped."""
        if self.config.duplicate_iou >= 1.0 or len(candidates) < 2:
            return candidates
        order = sorted(candidates, key=lambda c: -c.data["score"])
        kept = nms_keep(np.stack([_xyxy(c.points) for c in order]), [c.label for c in order], self.config.duplicate_iou)
        if len(kept) < len(order):
            logger.debug("tracking: dropped %d duplicate detections", len(order) - len(kept))
        return [order[k] for k in kept]

    def _reported_tracks(self) -> list:
        return [obj for obj in self._tracker.tracked_objects if not obj.is_initializing and obj.hit_counter_is_positive]

    @staticmethod
    def _overlap(candidates: list[Detection], tracks: list) -> np.ndarray:
        """(candidates, tracks) IoU of each detection with each track's last estimate (perception.boxes.box_iou)."""
        return box_iou(torch.from_numpy(np.stack([_xyxy(c.points) for c in candidates])),
                       torch.from_numpy(np.stack([_xyxy(o.estimate) for o in tracks]))).numpy()

    def _near(self, candidates: list[Detection], tracks: list, overlap: np.ndarray | None = None) -> np.ndarray:
        """(candidates, tracks) bool: within the association distance of the track's last estimate (before
        this frame's prediction), whatever their keys. overlap: their :meth:`_overlap`, if already known."""
        if self.config.distance == "iou":
            overlap = self._overlap(candidates, tracks) if overlap is None else overlap
            return overlap > 1.0 - self.config.distance_threshold
        gaps = np.stack([c.points.reshape(4) for c in candidates])[:, None, :] - np.stack(
            [o.estimate.reshape(4) for o in tracks])[None, :, :]
        return np.linalg.norm(gaps, axis=2) < self.config.distance_threshold

    def _continuing(self, low: list[Detection]) -> list[Detection]:
        """The low-scored detections near a reported track of their key (see :meth:`_near`)."""
        if self.config.continue_threshold <= 0:
            return []
        low = [candidate for candidate in low if candidate.data["score"] >= self.config.continue_threshold]
        tracks = self._reported_tracks()
        if not low or not tracks:
            return []
        same_key = np.array([[c.label == o.label for o in tracks] for c in low])
        return [candidate for candidate, keep in zip(low, (self._near(low, tracks) & same_key).any(axis=1)) if keep]

    def _join_wavering_phrases(self, candidates: list[Detection]) -> None:
        """Give a detection that no track of its own key is near the key of a reported track of another
        phrase that it overlaps by more than config.cross_phrase_iou, if no detection of that track's own
        key is near the track: the detector wavering between two phrases on one object."""
        if self.config.cross_phrase_iou >= 1.0 or self.config.label_gating == "prompt" or not candidates:
            return
        tracks = self._reported_tracks()
        if not tracks:
            return
        same_key = np.array([[c.label == o.label for o in tracks] for c in candidates])
        overlap = self._overlap(candidates, tracks)
        near_own = self._near(candidates, tracks, overlap) & same_key
        overlap[:, near_own.any(axis=0)] = 0.0  # tracks their own phrase continues are taken
        overlap[same_key] = 0.0
        for index in np.flatnonzero(~near_own.any(axis=1)):
            best = int(np.argmax(overlap[index]))
            if overlap[index, best] > self.config.cross_phrase_iou:
                candidates[index].label = tracks[best].label
                overlap[:, best] = 0.0  # one detection per track

    def _reid_distance(self, new, lost) -> float:
        """norfair ReID distance between a new (initializing) object and a lost or unmatched one, in box
        sizes of the lost object: how far the new box's centre is from where the lost object was last seen,
        less the distance the lost object covers at its usual speed in the frames since, or from where its
        filter puts its centre now, whichever is nearer.

        The lost object's size and speed come from its last matched boxes: the size from the largest (boxes
        of a partly hidden object shrink to the visible part), the speed as the median of its centre's steps
        per frame (a direction would mislead: the shrinking box of an object moving behind another moves the
        other way, and objects turn while hidden). Different keys never match, nor sizes more than 2x outside
        the range of the lost object's recent boxes. With ``reid_appearance`` set, neither do objects whose
        colours differ: the new box's histogram must be at least that similar to one of the lost object's
        recent boxes."""
        if new.label != lost.label:
            return math.inf
        history = self._history.get(lost.initializing_id)
        if not history:
            return math.inf
        box = _xyxy(new.last_detection.points)
        area = float(np.prod(box[2:] - box[:2]))
        frames, boxes, looks = zip(*history)
        areas = [float(np.prod(seen[2:] - seen[:2])) for seen in boxes]
        if area <= 0 or area > 2.0 * max(areas) or area < 0.5 * min(areas):
            return math.inf
        if self.config.reid_appearance > 0:
            new_look = new.last_detection.data.get("appearance")
            similar = [appearance_similarity(new_look, look) for look in looks if look is not None]
            if new_look is None or not similar or max(similar) < self.config.reid_appearance:
                return math.inf
        centres = np.stack([(seen[:2] + seen[2:]) / 2 for seen in boxes])
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1) / np.diff(frames) if len(frames) > 1 else [0.0]
        travelled = float(np.median(steps)) * (self._frame - frames[-1])
        absolute, predicted = _xyxy(new.last_detection.absolute_points), _xyxy(lost.estimate)
        from_last = float(np.linalg.norm((absolute[:2] + absolute[2:]) / 2 - centres[-1])) - travelled
        from_filter = float(np.linalg.norm((box[:2] + box[2:]) / 2 - (predicted[:2] + predicted[2:]) / 2))
        return max(0.0, min(from_last, from_filter)) / math.sqrt(max(areas))

    def _key(self, phrase: str) -> str:
        if self.config.label_gating == "prompt":
            return _ANY_PHRASE_KEY
        return "phrase:" + min(self._synonyms_of(phrase))

    def _synonyms_of(self, phrase: str) -> frozenset[str]:
        return self._synonyms.get(phrase, frozenset((phrase,)))

    def _to_norfair(self, detections: Detections) -> list[Detection]:
        boxes = detections.boxes
        if not np.isfinite(boxes).all():
            raise ValueError("tracking: detection boxes contain NaN or infinite values")
        has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not has_area.all():
            # A box without area has no IoU with anything; it cannot start or continue a track.
            logger.debug("tracking: ignored %d detections without area", int((~has_area).sum()))
        return [
            Detection(
                points=boxes[index].reshape(2, 2).astype(np.float64),  # [[x0, y0], [x1, y1]]
                label=self._key(detections.labels[index]),
                data={"phrase": detections.labels[index], "score": float(detections.scores[index])},
            )
            for index in np.flatnonzero(has_area)
        ]

    def _label(self, obj) -> str:
        counts = self._phrase_counts[obj.initializing_id]
        last = self._last_phrase[obj.initializing_id]
        return max(counts, key=lambda phrase: (counts[phrase], phrase == last))

    def _to_track(self, obj, matched: bool) -> Track:
        points = obj.last_detection.points if matched else obj.estimate
        x0, y0, x1, y1 = points.reshape(4)
        box = np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], dtype=np.float32)
        return Track(
            track_id=int(obj.id),
            label=self._label(obj),
            score=float(obj.last_detection.data["score"]),
            box_xyxy=box,
            age=int(obj.age),
            matched=matched,
        )

    def _forget_dead_objects(self) -> None:
        alive = {obj.initializing_id for obj in self._tracker.tracked_objects}
        for key in [key for key in self._phrase_counts if key not in alive]:
            del self._phrase_counts[key]
            del self._last_phrase[key]
            self._history.pop(key, None)
