"""Multi-object tracking of detections over frames, on norfair: one :class:`ObjectTracker` per stream.

Modules, in the order an update runs them: :mod:`.frames` (what an update accepts, and its time),
:mod:`.association` (detections to live tracks; each track's Kalman filter in :mod:`.kalman`), :mod:`.history`
(what is remembered of each track), :mod:`.reidentification` (a new track taking a lost track's id),
:mod:`.appearance` (colour histograms), and :mod:`.tracker` (the ``update`` that runs them). Settings:
:mod:`perception.tracking.config`.
"""
from perception.tracking.appearance import appearance, appearance_similarity
from perception.tracking.tracker import ObjectTracker, Track, detection_floor

__all__ = ["ObjectTracker", "Track", "appearance", "appearance_similarity", "detection_floor"]
