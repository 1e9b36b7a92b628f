"""What the tracker would score with a detector better in one respect: a recording's detections corrected against
the exact ground truth of its generated videos (`gdino eval tracking --replay-detections FILE --oracle MODE`).

Each object's own box is the box of its phrase that overlaps it most, at IoU >= COVER_IOU (none if no box does).
- "scores": every object's own box scores at least ORACLE_SCORE; nothing else changes. A detector that scores
  what it finds.
- "selection": the objects' own boxes, scoring at least ORACLE_SCORE, and no other box. A detector that picks
  exactly one of its boxes for each object it found, drawn as it drew it.
- "truth": as "selection", each box replaced by its object's ground-truth box. The same objects found in the
  same frames, drawn exactly.
Comparing the three with the plain replay splits what the tracker loses between the detector's scores, its extra
boxes and its drawing of the boxes it finds.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.tracking.coverage import COVER_IOU, phrase_overlap
from perception.tracking.recorded import Recording
from perception.training.synthetic import TrackedObject
from perception.types import Detections

ORACLE_MODES = ("scores", "selection", "truth")
ORACLE_SCORE = 0.9  # above every box threshold in use, so an object's own box always starts or continues a track


def _own_boxes(objects: Sequence[TrackedObject], detections: Detections) -> list[int | None]:
    """For each object, the index of its own box (see the module docstring), or None."""
    overlap = phrase_overlap(objects, detections)
    if not overlap.size:
        return [None] * len(objects)
    best = overlap.argmax(axis=1)
    return [int(index) if overlap[row, index] >= COVER_IOU else None for row, index in enumerate(best)]


def corrected(objects: Sequence[TrackedObject], detections: Detections, mode: str) -> Detections:
    """One frame's detections corrected as ``mode`` says (ORACLE_MODES), sorted by score as a recording's are."""
    if mode not in ORACLE_MODES:
        raise ValueError(f"oracle mode must be one of {', '.join(ORACLE_MODES)}; got {mode!r}")
    own = _own_boxes(objects, detections)
    boxes, scores = detections.boxes.copy(), detections.scores.astype(np.float32)
    owned = sorted({index for index in own if index is not None})
    scores[owned] = np.maximum(scores[owned], ORACLE_SCORE)
    if mode == "truth":
        drawn = set()
        for item, index in zip(objects, own):
            if index is not None and index not in drawn:  # two objects sharing a box: the first draws it
                boxes[index] = item.box
                drawn.add(index)
    keep = np.arange(len(scores)) if mode == "scores" else np.array(owned, int)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return Detections(boxes[keep], scores[keep], [detections.labels[k] for k in keep])


def corrected_video(recording: Recording, video: str, objects_per_frame: Sequence[Sequence[TrackedObject]],
                    mode: str) -> Recording:
    """A recording of ``video`` alone, each frame's detections corrected against that frame's ground truth
    (``objects_per_frame``, the video's own); without the video in ``recording``, one without it (a replay of it
    then says it is missing)."""
    if video not in recording.videos:
        return Recording(recording.header, {})
    return Recording(recording.header, {video: [None if found is None else corrected(objects, found, mode)
                                                for objects, found in zip(objects_per_frame, recording.videos[video])]})
