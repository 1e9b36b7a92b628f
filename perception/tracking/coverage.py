"""Where the tracker's misses on generated videos come from, by how much of each object shows.

Every ground-truth box of a frame the detector ran on falls in a band of its visibility (VISIBILITY_BANDS), and
each band reports three shares of its boxes:
- "tracked": a box our tracker reported in that frame overlaps it at IoU >= COVER_IOU;
- "detected": a detection of the object's phrase scoring above the box threshold (what starts a track) does;
- "found": a detection of its phrase at any score the detector reported does (down to a recording's floor).
A box overlapping enough covers it, without TrackEval's one-to-one matching: the shares say what there was to
match, not the score. Found but not detected is what the detector saw and scored under the threshold; detected
but not tracked, or tracked though not detected, is the tracker's doing.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.tracking.association import iou
from perception.training.synthetic import TrackedObject
from perception.types import Detections

# Lower edges of the bands; the last runs to 1 inclusive.
VISIBILITY_BANDS = (0.0, 0.2, 0.4, 0.6, 0.8)
COVER_IOU = 0.5  # TrackEval's (and MOTChallenge's) matching threshold
SHARES = ("tracked", "detected", "found")


def _band_names() -> list[str]:
    edges = [*VISIBILITY_BANDS, 1.0]
    return [f"{low:.1f}-{high:.1f}" for low, high in zip(edges, edges[1:])]


def phrase_overlap(objects: Sequence[TrackedObject], detections: Detections) -> np.ndarray:
    """(objects, detections) IoU of each object's box with each detection of its phrase; 0 with another phrase's."""
    if not objects or not len(detections):
        return np.zeros((len(objects), len(detections)), np.float32)
    overlap = iou([np.asarray(item.box, np.float32) for item in objects], list(detections.boxes))
    overlap[np.array([item.phrase for item in objects], object)[:, None]
            != np.array(detections.labels, object)[None, :]] = 0.0
    return overlap


def _covered(truth: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(objects,) bool: some box overlaps the object's box at IoU >= COVER_IOU."""
    if len(truth) == 0 or len(boxes) == 0:
        return np.zeros(len(truth), bool)
    return (iou(list(truth), list(boxes)) >= COVER_IOU).any(axis=1)


class Coverage:
    """Counts per visibility band over the frames added; ``as_dict`` gives the shares."""

    def __init__(self) -> None:
        self.counts = np.zeros((len(VISIBILITY_BANDS), 1 + len(SHARES)), np.int64)  # objects, then each share

    def add(self, objects: Sequence[TrackedObject], detections: Detections, tracked: np.ndarray,
            box_threshold: float) -> None:
        """One frame: its ground truth, the detector's output (down to its floor) and our tracker's reported
        boxes ((N, 4) xyxy)."""
        if not objects:
            return
        covering = phrase_overlap(objects, detections) >= COVER_IOU
        found = covering.any(axis=1)
        detected = (covering & (detections.scores > box_threshold)[None, :]).any(axis=1)
        tracked_covered = _covered(np.array([item.box for item in objects], np.float32), tracked)
        bands = np.searchsorted(VISIBILITY_BANDS, [item.visibility for item in objects], side="right") - 1
        for column, flags in enumerate((np.ones(len(objects), bool), tracked_covered, detected, found)):
            np.add.at(self.counts[:, column], bands, flags.astype(np.int64))

    def as_dict(self) -> dict[str, dict]:
        """Per band, highest visibility first: its ground-truth boxes and the share of each kind covered."""
        report = {}
        for name, row in reversed(list(zip(_band_names(), self.counts))):
            objects = int(row[0])
            report[name] = {"objects": objects, **{share: round(int(count) / objects, 3) if objects else None
                                                   for share, count in zip(SHARES, row[1:])}}
        return report


def read_mot_boxes(path, frames: int) -> list[np.ndarray]:
    """The boxes of a MOTChallenge file of ours (perception.tracking.records.mot_lines) per 0-based frame, xyxy."""
    boxes: list[list[list[float]]] = [[] for _ in range(frames)]
    with open(path, encoding="utf-8") as mot:
        for line in mot:
            values = line.split(",")
            x, y, width, height = (float(value) for value in values[2:6])
            boxes[int(values[0]) - 1].append([x, y, x + width, y + height])
    return [np.array(frame, np.float32).reshape(-1, 4) for frame in boxes]
