"""Association of one frame's detections with the live tracks: our steps before norfair's, then norfair's.

Before norfair: detections become norfair ``Detection`` objects keyed by phrase (or synonym group, or one
key for the whole prompt with ``label_gating="prompt"``); boxes of one key overlapping a better one by more
than ``duplicate_iou`` are dropped, so one object cannot start two tracks; a detection no track of its own
key is near may take the key of a reported track of another phrase it overlaps by more than
``cross_phrase_iou`` (the detector wavering between phrases); scores below the detector's box threshold
only continue a reported track of their key they overlap by more than ``continue_iou`` (tighter than the
gate) and that the detections scored to start tracks leave unmatched (``continue_threshold``, ByteTrack's second
association, after its first), and never start one.

Then norfair 2.3 matches greedily on 1 - IoU (or corner distance) within this update's gates
(:mod:`perception.tracking.gates`: ``TrackerConfig.distance_threshold_at`` its period, which may be set tighter
between consecutive frames than after frames the detector skipped, and there per track by how steady its boxes
have been; at the detector's pace ``distance_threshold``)
with a Kalman filter per track (:mod:`perception.tracking.kalman`; its measurement noise set before each update,
:func:`set_measurement_noise`: larger in a crowd of one key between consecutive frames when
``crowd_measurement_noise`` is set) and starts, confirms and ends tracks by its hit counter (see
:mod:`perception.tracking.config`). Its own re-identification is not used:
:mod:`perception.tracking.reidentification` replaces it. Its confirmation is corrected for the detector's stride
(:func:`hold_until_confirmed`, applied by the tracker to every new track norfair confirms on its first box, unless
that box continues an unconfirmed track norfair could not match): its counter starts at the stride, so from stride
3 on a single box was a confirmed track.

After norfair: of the objects it started, those a low score started and those overlapping the only reported
track of their key by more than ``new_track_iou`` (:meth:`Association.second_boxes`: a second, differently
drawn box on an object already tracked, which would otherwise become a second track of it) are ended; where
no box matched that track, the box overlapping it most continues it instead.
"""
from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np
import torch
from norfair import Detection, Tracker
from norfair.camera_motion import HomographyTransformationGetter, MotionEstimator, TranslationTransformationGetter
from norfair.filter import NoFilterFactory

from perception.boxes import box_iou
from perception.postprocess import nms_keep
from perception.tracking.config import CROWD_TRACKS, TrackerConfig
from perception.tracking.gates import Gates, GatedDistance
from perception.tracking.kalman import CarriedKalmanFilterFactory
from perception.types import Detections

logger = logging.getLogger(__name__)

# Association key shared by every phrase when label_gating is "prompt"; phrase keys carry a prefix so
# that no phrase (not even "") can collide with it.
_ANY_PHRASE_KEY = "any"


def xyxy(points: np.ndarray) -> np.ndarray:
    """norfair's (2, 2) corner points as an (x0, y0, x1, y1) box, corners in either order."""
    (ax, ay), (bx, by) = points
    return np.array([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)])


def norfair_tracker(config: TrackerConfig) -> Tracker:
    filter_factory = (
        CarriedKalmanFilterFactory(R=config.kalman_measurement_noise, Q=config.kalman_process_noise)
        if config.filter == "kalman"
        else NoFilterFactory()
    )
    tracker = Tracker(
        distance_function=config.distance,
        distance_threshold=config.distance_threshold,
        hit_counter_max=config.hit_counter_max,
        initialization_delay=config.initialization_delay,
        filter_factory=filter_factory,
        past_detections_length=0,
    )
    # norfair 2.3 takes a distance by name or as a function of one pair; its matching calls the object set here.
    tracker.distance_function = GatedDistance(config.distance)
    return tracker


def set_measurement_noise(objects: list, config: TrackerConfig, consecutive: bool) -> None:
    """Set the measurement noise each norfair object's Kalman filter uses in the coming update: the config's
    crowd_measurement_noise where the object's key has at least CROWD_TRACKS reported objects and the detector took
    the previous frame too (``consecutive``), its kalman_measurement_noise elsewhere. norfair gives every filter its
    factory's R once; its OptimizedKalmanFilter reads it from ``default_r`` on each update, which is where we change
    it (the one place we reach into the filter)."""
    if config.crowd_measurement_noise <= 0 or config.filter != "kalman":
        return
    counts = Counter(obj.label for obj in reported(objects)) if consecutive else Counter()
    for obj in objects:
        crowded = counts[obj.label] >= CROWD_TRACKS
        obj.filter.default_r[:] = config.crowd_measurement_noise if crowded else config.kalman_measurement_noise


def confirmation_matches(initialization_delay: int, period: int) -> int:
    """Matches after its first detection that a new track needs before it is confirmed: initialization_delay
    frames of evidence at the detector's stride (period), and at least one whatever the stride."""
    return 0 if initialization_delay == 0 else max(1, math.ceil(initialization_delay / period))


def hold_until_confirmed(obj, initialization_delay: int, period: int) -> None:
    """Make an object norfair started in an update of this period wait for confirmation_matches.

    norfair starts an object's hit counter at the period, adds two periods per match and takes one per
    update, and confirms the object once the counter exceeds its initialization delay: with delay 2, a track
    started at stride 3 was confirmed (reported, and offered a lost track's id) on its first box, a false
    positive included. Unmatched, the counter of a track k matches on stands near period * (k + 1), so the
    delay it must exceed becomes one less than that for k = confirmation_matches (at stride 1 the configured
    delay itself; at stride 2 the same confirmation as norfair's; within norfair's counter range).
    """
    matches = confirmation_matches(initialization_delay, period)
    _confirm_above(obj, period * (matches + 1) - 1 if matches else 0)


def hold_until_spanned(obj, initialization_delay: int) -> None:
    """Make an object norfair started at the detector's pace wait until its boxes span initialization_delay
    frames, however unevenly the detector took them, and for at least one match after its first box.

    Its hit counter must be held through the frames the detector skipped (``ObjectTracker._catch_up``): it then
    takes one per run of the detector and adds two per frame of each matched run's gap, so from its start c it
    stands at c - r + 2G after r runs whose matches span G frames. With every run a match it exceeds
    c + 2 * delay - 3 once G reaches the delay (delay 2: the second box if it comes two or more frames after the
    first, else the third); a run that misses it counts against it. Without the hold, norfair's counter (started
    at the frames before its first box, losing one per frame) ended a new track before a box three or more
    frames later, and confirmed one that did survive after a number of boxes that depended on the gap before it.
    """
    if initialization_delay == 0:
        return
    start = obj.hit_counter
    _confirm_above(obj, max(start + 2 * initialization_delay - 3, start))


def _confirm_above(obj, delay: int) -> None:
    """Set the hit count a norfair object must exceed to be confirmed (its initialization delay), within norfair's
    counter range, and whether it is still unconfirmed now."""
    obj.initialization_delay = min(delay, obj.hit_counter_max - 1)
    obj.is_initializing = obj.hit_counter <= obj.initialization_delay


def motion_estimator(config: TrackerConfig) -> MotionEstimator | None:
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


def same_key(objects: list, others: list) -> np.ndarray:
    """(objects, others) bool: the two share an association key (norfair ``label``); detections or objects."""
    keyed = np.array([[a.label == b.label for b in others] for a in objects], dtype=bool)
    return keyed.reshape(len(objects), len(others))


def iou(boxes: list[np.ndarray], others: list[np.ndarray]) -> np.ndarray:
    """(boxes, others) IoU of two lists of xyxy boxes."""
    return box_iou(torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(others))).numpy()


def only_of_their_key(objects: list) -> list[bool]:
    """For each norfair object (or detection), whether no other of ``objects`` shares its association key."""
    counts = Counter(obj.label for obj in objects)
    return [counts[obj.label] == 1 for obj in objects]


def greedy_matched(closeness: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(columns,) bool: the columns that a one-to-one assignment of rows to columns gives a row, taking the
    closest allowed (row, column) pair first, as norfair matches detections to tracks. closeness: (rows,
    columns), larger = closer; allowed: (rows, columns) bool."""
    closeness = np.where(allowed, closeness, -np.inf)
    matched = np.zeros(closeness.shape[1], bool)
    for _ in range(min(closeness.shape)):
        row, column = np.unravel_index(np.argmax(closeness), closeness.shape)
        if closeness[row, column] == -np.inf:
            break
        matched[column] = True
        closeness[row, :] = -np.inf
        closeness[:, column] = -np.inf
    return matched


def reported(objects: list) -> list:
    """The norfair objects past their initialization delay whose hit counter has not run out."""
    return [obj for obj in objects if not obj.is_initializing and obj.hit_counter_is_positive]


class Association:
    """Turns detections into norfair candidates of their association keys; see the module docstring."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._synonyms = {phrase: frozenset(group) for group in config.synonym_groups for phrase in group}

    def synonyms_of(self, phrase: str) -> frozenset[str]:
        return self._synonyms.get(phrase, frozenset((phrase,)))

    def key(self, phrase: str) -> str:
        if self.config.label_gating == "prompt":
            return _ANY_PHRASE_KEY
        return "phrase:" + min(self.synonyms_of(phrase))

    def candidates(self, detections: Detections, tracks: list, start_threshold: float,
                   gates: Gates) -> tuple[list, list]:
        """(candidates for norfair, the low-scored ones among them) from one frame's detections; tracks:
        the norfair objects that are reported now; gates: this update's distance thresholds (those norfair
        matches with, :mod:`perception.tracking.gates`)."""
        candidates = self._without_duplicates(self._to_norfair(detections))
        self._join_wavering_phrases(candidates, tracks, gates)
        low = [candidate for candidate in candidates if candidate.data["score"] < start_threshold]
        if low:
            candidates = [candidate for candidate in candidates if candidate.data["score"] >= start_threshold]
            low = self._continuing(low, tracks, candidates, gates)
        return candidates + low, low

    def _to_norfair(self, detections: Detections) -> list[Detection]:
        boxes = detections.boxes
        has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not has_area.all():
            # A box without area has no IoU with anything; it cannot start or continue a track.
            logger.debug("tracking: ignored %d detections without area", int((~has_area).sum()))
        return [
            Detection(
                points=boxes[index].reshape(2, 2).astype(np.float64),  # [[x0, y0], [x1, y1]]
                label=self.key(detections.labels[index]),
                data={"phrase": detections.labels[index], "score": float(detections.scores[index])},
            )
            for index in np.flatnonzero(has_area)
        ]

    def _without_duplicates(self, candidates: list[Detection]) -> list[Detection]:
        """Greedy per-key suppression: best score first, a detection overlapping a kept one of its key by
        more than config.duplicate_iou is dropped."""
        if self.config.duplicate_iou >= 1.0 or len(candidates) < 2:
            return candidates
        order = sorted(candidates, key=lambda c: -c.data["score"])
        boxes = [xyxy(c.points) for c in order]
        overlap = iou(boxes, boxes)
        keyed = same_key(order, order)
        np.fill_diagonal(keyed, False)
        if not (overlap[keyed] > self.config.duplicate_iou).any():
            return candidates  # the usual frame: nothing to suppress, so no greedy pass
        kept = nms_keep(np.stack(boxes), [c.label for c in order], self.config.duplicate_iou)
        if len(kept) < len(order):
            logger.debug("tracking: dropped %d duplicate detections", len(order) - len(kept))
        return [order[k] for k in kept]

    @staticmethod
    def _overlap(candidates: list[Detection], tracks: list) -> np.ndarray:
        """(candidates, tracks) IoU of each detection with each track's last estimate."""
        return iou([xyxy(c.points) for c in candidates], [xyxy(o.estimate) for o in tracks])

    def second_boxes(self, started: list, tracks: list, fresh: set[int]) -> tuple[list, list[tuple]]:
        """Of the norfair objects started in this frame, those whose box overlaps one of ``tracks`` (the older
        objects reported after this frame's match, as estimated then) of their key by more than
        config.new_track_iou while that track is the only one of ``tracks`` with its key; returns them, to end,
        and (track, object) pairs: a lone track this frame's match left unmatched (its last detection not among
        ``fresh``, the ``id()`` of the detections handed to norfair) and the object of the box overlapping it
        most, whose box continues it.

        With one object of a phrase in view, a box overlapping it is likelier the detector's second box on it
        than a newcomer, and where no box matched the track it is the object itself, moved further than the
        association's reach; among several of one phrase (a crowd), someone partly hidden behind one of them
        is as likely, and the box starts its track as before."""
        if self.config.new_track_iou >= 1.0 or not started or not tracks:
            return [], []
        alone = [track for track, single in zip(tracks, only_of_their_key(tracks)) if single]
        if not alone:
            return [], []
        overlap = iou([xyxy(o.estimate) for o in started], [xyxy(o.estimate) for o in alone])
        overlap = np.where(same_key(started, alone), overlap, 0.0)
        second = (overlap > self.config.new_track_iou).any(axis=1)
        continued = [(track, started[int(np.argmax(overlap[:, j]))]) for j, track in enumerate(alone)
                     if id(track.last_detection) not in fresh and overlap[:, j].max() > self.config.new_track_iou]
        return [obj for obj, is_second in zip(started, second) if is_second], continued

    def _closeness(self, candidates: list[Detection], tracks: list, gates: Gates,
                   overlap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(candidates, tracks) closeness of each detection to each track's last estimate (before this frame's
        prediction), whatever their keys: the IoU, or minus the corner distance in pixels; and whether it is
        within the track's association distance (its gate in ``gates``). overlap: their :meth:`_overlap`, if
        already known."""
        gate = gates.of(tracks)[None, :]
        if self.config.distance == "iou":
            overlap = self._overlap(candidates, tracks) if overlap is None else overlap
            return overlap, overlap > 1.0 - gate
        gaps = np.stack([c.points.reshape(4) for c in candidates])[:, None, :] - np.stack(
            [o.estimate.reshape(4) for o in tracks])[None, :, :]
        distance = np.linalg.norm(gaps, axis=2)
        return -distance, distance < gate

    def _near(self, candidates: list[Detection], tracks: list, gates: Gates,
              overlap: np.ndarray | None = None) -> np.ndarray:
        """(candidates, tracks) bool: within the track's association distance (see :meth:`_closeness`)."""
        return self._closeness(candidates, tracks, gates, overlap)[1]

    def _continuing(self, low: list[Detection], tracks: list, high: list[Detection],
                    gates: Gates) -> list[Detection]:
        """The low-scored detections near a reported track of their key (see :meth:`_near`), overlapping it by
        more than config.continue_iou, that the start-scored detections ``high`` leave unmatched, each of them
        taking a near track of its key, closest pairs first (norfair's greedy order): a low box never takes a
        track from a sure one. In a crowd the low boxes of a model are often a second box on someone or a box
        between two people, and closer to a track than that person's own sure box; continuing with them made
        identity switches, and a box between two people overlapping the track of the one it missed within the
        gate carried that track onto the other."""
        if self.config.continue_threshold <= 0:
            return []
        low = [candidate for candidate in low if candidate.data["score"] >= self.config.continue_threshold]
        if not low or not tracks:
            return []
        overlap = self._overlap(low, tracks)
        near_own = self._near(low, tracks, gates, overlap) & same_key(low, tracks)
        if self.config.continue_iou > 0:
            near_own &= overlap > self.config.continue_iou
        if high:
            closeness, near = self._closeness(high, tracks, gates)
            near_own &= ~greedy_matched(closeness, near & same_key(high, tracks))[None, :]
        return [candidate for candidate, keep in zip(low, near_own.any(axis=1)) if keep]

    def _join_wavering_phrases(self, candidates: list[Detection], tracks: list, gates: Gates) -> None:
        """Give a detection that no track of its own key is near the key of a reported track of another
        phrase that it overlaps by more than config.cross_phrase_iou, if no detection of that track's own
        key is near the track: the detector wavering between two phrases on one object."""
        if self.config.cross_phrase_iou >= 1.0 or self.config.label_gating == "prompt" or not candidates or not tracks:
            return
        keyed = same_key(candidates, tracks)
        overlap = self._overlap(candidates, tracks)
        near_own = self._near(candidates, tracks, gates, overlap) & keyed
        overlap[:, near_own.any(axis=0)] = 0.0  # tracks their own phrase continues are taken
        overlap[keyed] = 0.0
        for index in np.flatnonzero(~near_own.any(axis=1)):
            best = int(np.argmax(overlap[index]))
            if overlap[index, best] > self.config.cross_phrase_iou:
                candidates[index].label = tracks[best].label
                overlap[:, best] = 0.0  # one detection per track
