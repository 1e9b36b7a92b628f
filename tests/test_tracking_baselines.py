"""The baselines of `gdino eval tracking`: plain norfair as norfair itself tracks, and our ByteTrack."""
from __future__ import annotations

import numpy as np
import pytest
from norfair import Detection, Tracker

from perception.tracking.baselines import NORFAIR_SETTINGS, ByteTrack, ByteTrackConfig, NorfairBaseline, _assignment
from perception.tracking.noise import NOISY_TRUTH_BOX_THRESHOLD, NoiseConfig, NoisyTruth
from perception.training.crowds import generate_crowd_video
from perception.types import Detections

THRESHOLD = 0.35


def frame(*objects: tuple[tuple[float, float, float, float], float, str]) -> Detections:
    """Detections of (box, score, phrase) triples."""
    return Detections(np.array([box for box, _, _ in objects], np.float32).reshape(-1, 4),
                      np.array([score for _, score, _ in objects], np.float32), [label for _, _, label in objects])


def walking(x: float, score: float = 0.9, label: str = "person", y: float = 40.0):
    return (x, y, x + 30.0, y + 60.0), score, label


def ids(tracks) -> list[int]:
    return [track.track_id for track in tracks]


def test_plain_norfair_gives_norfair_s_own_ids():
    _, truth = generate_crowd_video(1, 80, (240, 320))
    noisy = NoisyTruth(NoiseConfig(), (240, 320), np.random.default_rng(1))
    detections = [noisy(objects) for objects in truth]
    baseline, direct = NorfairBaseline(), Tracker(**NORFAIR_SETTINGS)
    assert baseline.settings == {"distance_function": "iou", "distance_threshold": 0.7, "hit_counter_max": 15,
                                 "initialization_delay": 3}
    compared = 0
    for frame_detections in detections:
        ours = baseline.update(frame_detections, box_threshold=NOISY_TRUTH_BOX_THRESHOLD)
        kept = frame_detections.scores >= NOISY_TRUTH_BOX_THRESHOLD
        theirs = direct.update([Detection(box.reshape(2, 2).astype(np.float64), label=label) for box, label, keep in
                                zip(frame_detections.boxes, frame_detections.labels, kept) if keep])
        assert ids(ours) == sorted(int(obj.id) for obj in theirs)
        compared += len(ours)
    assert compared > 300


def test_bytetrack_keeps_an_id_through_a_short_miss():
    tracker = ByteTrack(ByteTrackConfig(track_buffer=10))
    reported = []
    for step in range(20):
        missed = 8 <= step < 11
        detections = frame() if missed else frame(walking(10.0 + 3 * step))
        reported.append(ids(tracker.update(detections, box_threshold=THRESHOLD)))
    assert reported[:8] == [[1]] * 8 and reported[8:11] == [[]] * 3  # ByteTrack reports matched tracks only
    assert reported[11:] == [[1]] * 9


def test_bytetrack_forgets_a_track_lost_longer_than_its_buffer():
    tracker = ByteTrack(ByteTrackConfig(track_buffer=3))
    for step in range(5):
        tracker.update(frame(walking(10.0 + 3 * step)), box_threshold=THRESHOLD)
    for _ in range(4):
        tracker.update(frame(), box_threshold=THRESHOLD)
    first = tracker.update(frame(walking(37.0)), box_threshold=THRESHOLD)
    assert first == []  # a new track waits for its confirming match
    assert ids(tracker.update(frame(walking(40.0)), box_threshold=THRESHOLD)) == [2]


def test_bytetrack_continues_a_track_with_low_scored_boxes_and_never_starts_one_from_them():
    tracker = ByteTrack()
    for step in range(5):
        tracker.update(frame(walking(10.0 + 3 * step)), box_threshold=THRESHOLD)
    # The person is half hidden: its score dips below the box threshold, a low-scored box elsewhere appears.
    for step in range(5, 10):
        tracks = tracker.update(frame(walking(10.0 + 3 * step, score=0.2), walking(200.0, score=0.2, y=150.0)),
                                box_threshold=THRESHOLD)
        assert ids(tracks) == [1] and tracks[0].score == pytest.approx(0.2)
    assert ids(tracker.update(frame(walking(40.0), walking(200.0, score=0.2, y=150.0)), box_threshold=THRESHOLD)) == [1]
    # Below ByteTrack's low threshold nothing continues.
    assert tracker.update(frame(walking(43.0, score=0.05)), box_threshold=THRESHOLD) == []


def test_bytetrack_keeps_phrases_apart():
    tracker = ByteTrack()
    for step in range(3):
        tracks = tracker.update(frame(walking(10.0 + 3 * step, label="red car" if step == 2 else "person")),
                                box_threshold=THRESHOLD)
    assert tracks == []  # the car may not continue the person, and is not confirmed yet


def test_bytetrack_matching_leaves_a_poor_pair_unmatched_rather_than_taking_a_worse_one():
    # Track 0 overlaps detection 0 well and detection 1 poorly; track 1 overlaps only detection 0, poorly.
    # Matching the most pairs would give (0, 1) and (1, 0); ByteTrack's cost limit keeps (0, 0) alone.
    cost = 1.0 - np.array([[0.9, 0.25], [0.3, 0.0]])
    assert _assignment(cost, limit=0.8) == [(0, 0)]
    assert _assignment(np.full((2, 0), 0.5), limit=0.8) == []


def test_bytetrack_settings_state_their_ranges():
    with pytest.raises(ValueError, match=r"bytetrack first_iou must be in \[0, 1\); got 1.5"):
        ByteTrackConfig(first_iou=1.5)
    assert ByteTrackConfig.for_frame_rate(10).track_buffer == 10
    assert ByteTrackConfig.for_frame_rate(30).track_buffer == 30
