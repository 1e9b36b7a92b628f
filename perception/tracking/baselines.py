"""Baseline trackers that `gdino eval tracking` scores beside ours on the identical detections.

- :class:`NorfairBaseline`: plain ``norfair.Tracker`` with its documented IoU settings (:data:`NORFAIR_SETTINGS`),
  one norfair label per phrase, nothing else of ours.
- :class:`ByteTrack`: our short implementation of ByteTrack's two-stage association (Zhang et al., 2022):
  a Kalman filter predicts every track; detections at or above the detector's box threshold are matched
  first (to tracked and lost tracks, Hungarian on IoU), then the low-scored ones (down to
  ``ByteTrackConfig.low_threshold``) to the tracked tracks left over; new tracks start from unmatched
  high-scored detections and are confirmed by a match on the next frame; lost tracks wait
  ``track_buffer`` frames for a match. Only tracks matched in a frame are reported, as in ByteTrack.
  No maintained package installs here: ``bytetracker`` 0.3.2 pins torch 1.13 and scipy 1.9, and
  ``supervision`` 0.31 no longer has a tracker.

Both take one frame's :class:`~perception.types.Detections` per ``update`` (``None`` on frames the detector
skipped) and return :class:`~perception.tracking.Track` objects, reporting a matched track at its detection's
box (as our tracker does), so the comparison is about association, not box smoothing. Phrases never
continue each other's tracks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from norfair import Detection, Tracker
from scipy.optimize import linear_sum_assignment

from perception.boxes import box_iou
from perception.tracking import Track
from perception.types import Detections

# norfair's documented settings for boxes with the IoU distance (its README and the issue).
NORFAIR_SETTINGS = {"distance_function": "iou", "distance_threshold": 0.7, "hit_counter_max": 15,
                    "initialization_delay": 3}


class NorfairBaseline:
    """Plain norfair with NORFAIR_SETTINGS and its default Kalman filter; detections scored below the box
    threshold are dropped, as a plain pipeline that runs its detector at that threshold never sees them."""

    name = "norfair"

    def __init__(self) -> None:
        self._tracker = Tracker(**NORFAIR_SETTINGS)

    @property
    def settings(self) -> dict:
        return dict(NORFAIR_SETTINGS)

    def update(self, detections: Detections | None, period: int = 1, box_threshold: float = 0.0) -> list[Track]:
        candidates = [] if detections is None else [
            Detection(points=box.reshape(2, 2).astype(np.float64), label=label, data=float(score))
            for box, score, label in zip(detections.boxes, detections.scores, detections.labels)
            if score >= box_threshold and box[2] > box[0] and box[3] > box[1]
        ]
        fresh = {id(candidate) for candidate in candidates}
        tracks = []
        for obj in self._tracker.update(candidates, period=period):
            matched = id(obj.last_detection) in fresh
            points = obj.last_detection.points if matched else obj.estimate
            box = np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)
            tracks.append(Track(int(obj.id), obj.label, float(obj.last_detection.data), box, int(obj.age), matched))
        return sorted(tracks, key=lambda track: track.track_id)


@dataclass(frozen=True)
class ByteTrackConfig:
    """ByteTrack's settings; the high threshold is the detector's box threshold, given per update."""

    low_threshold: float = 0.1  # lowest score of the second association
    new_track_margin: float = 0.1  # a new track needs the high threshold plus this (ByteTrack's det_thresh)
    first_iou: float = 0.2  # least IoU of a first-stage match (ByteTrack's match_thresh 0.8 on 1 - IoU)
    second_iou: float = 0.5  # least IoU of a low-score match
    unconfirmed_iou: float = 0.3  # least IoU that confirms a new track
    track_buffer: int = 30  # frames a lost track waits; ByteTrack's 30 at 30 fps, see for_frame_rate

    def __post_init__(self) -> None:
        for name in ("low_threshold", "new_track_margin", "first_iou", "second_iou", "unconfirmed_iou"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"bytetrack {name} must be in [0, 1); got {getattr(self, name)}")
        if not 1 <= self.track_buffer <= 10_000:
            raise ValueError(f"bytetrack track_buffer must be in [1, 10000] frames; got {self.track_buffer}")

    @classmethod
    def for_frame_rate(cls, frame_rate: float) -> ByteTrackConfig:
        """ByteTrack's rule: its 30-frame buffer is one second at 30 fps."""
        return cls(track_buffer=max(1, int(frame_rate / 30.0 * 30)))


class _BoxFilter:
    """Constant-velocity Kalman filter of one box, state (cx, cy, w, h) and their velocities per frame. Noise
    scales with the box's size as in ByteTrack (position 1/20, velocity 1/160 of it)."""

    _POSITION, _VELOCITY = 1.0 / 20, 1.0 / 160

    def __init__(self, box: np.ndarray) -> None:
        size = self._size(box)
        self.mean = np.concatenate([self._measure(box), np.zeros(4)])
        self.covariance = np.diag(np.concatenate([2 * self._POSITION * size, 10 * self._VELOCITY * size]) ** 2)

    @staticmethod
    def _measure(box: np.ndarray) -> np.ndarray:
        return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])

    @staticmethod
    def _size(box: np.ndarray) -> np.ndarray:
        width, height = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
        return np.array([width, height, width, height])

    def predict(self) -> None:
        transition = np.eye(8)
        transition[:4, 4:] = np.eye(4)
        size = self._size(self.box)
        noise = np.diag(np.concatenate([self._POSITION * size, self._VELOCITY * size]) ** 2)
        self.mean = transition @ self.mean
        self.covariance = transition @ self.covariance @ transition.T + noise

    def update(self, box: np.ndarray) -> None:
        noise = np.diag((self._POSITION * self._size(box)) ** 2)
        innovation_covariance = self.covariance[:4, :4] + noise
        gain = np.linalg.solve(innovation_covariance, self.covariance[:4, :]).T  # (8, 4)
        self.mean = self.mean + gain @ (self._measure(box) - self.mean[:4])
        self.covariance = self.covariance - gain @ self.covariance[:4, :]

    @property
    def box(self) -> np.ndarray:
        cx, cy = self.mean[:2]
        width, height = np.maximum(self.mean[2:4], 1.0)  # a shrinking velocity must not turn the box inside out
        return np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2])


@dataclass(eq=False)  # tracks are compared and hashed by identity
class _ByteTrack:
    track_id: int
    label: str
    filter: _BoxFilter
    score: float
    box: np.ndarray  # last matched detection, xyxy
    first_frame: int
    last_frame: int  # frame of the last match
    confirmed: bool


def _assignment(cost: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Least-cost matching of rows to columns of (N, M) cost where leaving a row or a column unmatched costs
    limit / 2 each (so no pair costing more than limit is ever chosen), as ByteTrack's lapjv with cost_limit:
    Hungarian on the matrix extended by one such "unmatched" slot per row and per column."""
    rows, cols = cost.shape
    unmatched = np.full((rows + cols, cols + rows), np.inf)
    unmatched[:rows, :cols] = np.where(cost <= limit, cost, np.inf)
    unmatched[:rows, cols:][np.diag_indices(rows)] = limit / 2
    unmatched[rows:, :cols][np.diag_indices(cols)] = limit / 2
    unmatched[rows:, cols:] = 0.0
    finite = np.where(np.isfinite(unmatched), unmatched, 1e9)  # scipy refuses infinite entries it may need
    chosen = zip(*linear_sum_assignment(finite))
    return [(int(row), int(col)) for row, col in chosen if row < rows and col < cols and cost[row, col] <= limit]


class ByteTrack:
    """ByteTrack-style two-stage association, per phrase (see the module docstring)."""

    name = "bytetrack"

    def __init__(self, config: ByteTrackConfig | None = None) -> None:
        self.config = config or ByteTrackConfig()
        self._tracks: list[_ByteTrack] = []
        self._frame = 0
        self._next_id = 1

    @property
    def settings(self) -> dict:
        return asdict(self.config)

    def update(self, detections: Detections | None, period: int = 1, box_threshold: float = 0.0) -> list[Track]:
        for track in self._tracks:
            track.filter.predict()
        self._frame += 1
        if detections is None:
            # Frames the detector skipped: where the tracks matched at its last run are now.
            previous = self._frame - 1
            return [self._report(t, t.filter.box, False) for t in self._tracks
                    if t.confirmed and t.last_frame == previous]
        scores = detections.scores
        has_area = (detections.boxes[:, 2] > detections.boxes[:, 0]) & (detections.boxes[:, 3] > detections.boxes[:, 1])
        high = np.flatnonzero(has_area & (scores >= box_threshold))
        low = np.flatnonzero(has_area & (scores < box_threshold) & (scores >= self.config.low_threshold))
        confirmed = [t for t in self._tracks if t.confirmed]
        unconfirmed = [t for t in self._tracks if not t.confirmed]
        matched, high = self._associate(confirmed, detections, high, self.config.first_iou)
        tracked = [t for t in confirmed if t.last_frame == self._frame - period and t not in matched]
        low_matched, _ = self._associate(tracked, detections, low, self.config.second_iou)
        confirmed_now, high = self._associate(unconfirmed, detections, high, self.config.unconfirmed_iou)
        for track in confirmed_now:
            track.confirmed = True
        reported = matched | low_matched | confirmed_now
        for index in high:
            if scores[index] >= box_threshold + self.config.new_track_margin:
                started = self._start(detections, index)
                if started.confirmed:
                    reported.add(started)
        self._tracks = [t for t in self._tracks if t in reported or (t.confirmed and
                        self._frame - t.last_frame <= self.config.track_buffer) or t.first_frame == self._frame]
        return sorted((self._report(t, t.box, True) for t in reported), key=lambda track: track.track_id)

    def _associate(self, tracks: list[_ByteTrack], detections: Detections, candidates: np.ndarray,
                   min_iou: float) -> tuple[set, np.ndarray]:
        """Matching of tracks (at their predicted boxes) to the candidate detections on 1 - IoU (_assignment),
        phrases kept apart; pairs below min_iou cannot match. Updates the matched tracks. Returns them and the
        candidates left over."""
        if not tracks or len(candidates) == 0:
            return set(), candidates
        predicted = torch.from_numpy(np.stack([t.filter.box for t in tracks]))
        overlap = box_iou(predicted, torch.from_numpy(detections.boxes[candidates].astype(np.float64))).numpy()
        same_label = np.array([[t.label == detections.labels[c] for c in candidates] for t in tracks])
        matched = set()
        used = np.zeros(len(candidates), bool)
        for row, col in _assignment(np.where(same_label, 1.0 - overlap, np.inf), 1.0 - min_iou):
            track, index = tracks[row], candidates[col]
            track.filter.update(detections.boxes[index].astype(np.float64))
            track.box, track.score = detections.boxes[index], float(detections.scores[index])
            track.last_frame = self._frame
            matched.add(track)
            used[col] = True
        return matched, candidates[~used]

    def _start(self, detections: Detections, index: int) -> _ByteTrack:
        box = detections.boxes[index]
        # ByteTrack confirms the tracks of the very first frame at once; later ones need a second match.
        track = _ByteTrack(self._next_id, detections.labels[index], _BoxFilter(box.astype(np.float64)),
                           float(detections.scores[index]), box, self._frame, self._frame, confirmed=self._frame == 1)
        self._tracks.append(track)
        self._next_id += 1
        return track

    def _report(self, track: _ByteTrack, box: np.ndarray, matched: bool) -> Track:
        return Track(track.track_id, track.label, track.score, np.asarray(box, np.float32),
                     self._frame - track.first_frame, matched)
