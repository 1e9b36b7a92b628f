"""The association's gate of each track in one update: the largest distance at which a box still continues it.

norfair matches every track with one threshold, which the tracker sets on each update
(``TrackerConfig.distance_threshold_at`` the update's period). With ``steady_gate_margin`` set (0.2 by
default), tracks differ between two consecutive frames the detector took: a track whose own boxes have stayed
steady from frame to frame, overlapping each other by at least ``m`` (the least IoU of its last
``STEADY_PAIRS`` pairs of boxes in consecutive frames, at least ``MIN_STEADY_PAIRS`` of them), accepts only a
box overlapping it by more than ``m - steady_gate_margin``, within the gates ``distance_threshold_at(1)``
(``consecutive_distance_threshold``, 0.5 by default: the tightest) and ``distance_threshold``; a track without
that evidence (new, or matched at a stride) keeps ``distance_threshold``. A box overlapping a steady track by
much less than its own boxes ever have is likelier a neighbour's; a detector whose boxes of one object wobble
(the bundled model's do more than noisy truth's) keeps the looser gate on the tracks it wobbles on, where one
tight gate for all ended them.

:class:`GatedDistance` applies the per-track gates inside norfair's matching, and the tracker's own steps before
it (:mod:`perception.tracking.association`) read the same :class:`Gates`, so both agree on which track a box is
near.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from norfair.distances import Distance, get_distance_by_name

from perception.tracking.config import TrackerConfig

# Pairs of a track's boxes in consecutive frames that its steadiness is taken over (the latest ones), and the
# fewest that give it a gate of its own.
STEADY_PAIRS = 8
MIN_STEADY_PAIRS = 3


@dataclass(frozen=True)
class Gates:
    """One update's gates: ``default`` (norfair's threshold) for every track but those in ``by_track`` (norfair
    ``initializing_id`` -> gate, never above ``default``)."""

    default: float
    by_track: dict[int, float] = field(default_factory=dict)

    def of(self, tracks: Sequence) -> np.ndarray:
        """(tracks,) the gate of each norfair object."""
        return np.array([self.by_track.get(obj.initializing_id, self.default) for obj in tracks], dtype=np.float64)


def steady_gate(steadiness: Sequence[float], config: TrackerConfig) -> float | None:
    """A track's own gate between consecutive frames from the IoUs of its latest pairs of boxes in consecutive
    frames (oldest first), or None without enough of them (or with ``steady_gate_margin`` unset)."""
    if config.steady_gate_margin is None or len(steadiness) < MIN_STEADY_PAIRS:
        return None
    least = min(list(steadiness)[-STEADY_PAIRS:])
    gate = 1.0 - (least - config.steady_gate_margin)
    return float(np.clip(gate, config.distance_threshold_at(1), config.distance_threshold))


def update_gates(period: int, config: TrackerConfig, steadiness: dict[int, Sequence[float]]) -> Gates:
    """The gates of an update ``period`` frames after the detector's previous run (:meth:`ObjectTracker.update`);
    steadiness: each live norfair object's (by ``initializing_id``) IoUs of its pairs of boxes in consecutive frames."""
    tightest = config.distance_threshold_at(period)
    if config.steady_gate_margin is None or tightest == config.distance_threshold:
        return Gates(tightest)
    own = {key: steady_gate(ious, config) for key, ious in steadiness.items()}
    return Gates(config.distance_threshold, {key: gate for key, gate in own.items() if gate is not None})


class GatedDistance(Distance):
    """norfair's distance ``name`` ("iou", "euclidean") with the per-track gates of :attr:`gates` (set before
    each update): a distance at or beyond its track's gate becomes infinite, which norfair never matches. The
    order of the pairs within their gates is norfair's own."""

    def __init__(self, name: str) -> None:
        self._distance = get_distance_by_name(name)
        self.gates = Gates(np.inf)

    def get_distances(self, objects: Sequence, candidates: Sequence | None) -> np.ndarray:
        distances = self._distance.get_distances(objects, candidates)
        if not self.gates.by_track or distances.size == 0:
            return distances
        return np.where(distances < self.gates.of(objects)[None, :], distances, np.inf).astype(distances.dtype)
