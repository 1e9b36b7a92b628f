"""TrackEval metrics through perception.tracking.metrics (merged ids and fragmentations too), and the tracker scored on
noisy ground truth."""
from __future__ import annotations

import numpy as np
import pytest

from perception.tracking.metrics import evaluate_mot
from perception.tracking.evaluation import TrackingEvalConfig, evaluate_on_synthetic_videos, switches_per_20_tracks
from perception.tracking.noise import NoiseConfig
from perception.training.synthetic import generate_video, write_mot_ground_truth, write_mot_sequence

SIZE = (120, 160)


@pytest.fixture(scope="module")
def truth():
    return generate_video(5, 40, SIZE)[1]


def score(tmp_path, truth, tracker_objects):
    write_mot_sequence(tmp_path / "gt" / "clip", truth, SIZE)
    (tmp_path / "trackers" / "mine").mkdir(parents=True)
    write_mot_ground_truth(tmp_path / "trackers" / "mine" / "clip.txt", tracker_objects)
    return evaluate_mot(tmp_path / "gt", tmp_path / "trackers" / "mine", {"clip": len(truth)})


def test_the_truth_scores_perfectly(tmp_path, truth):
    scores = score(tmp_path, truth, truth)
    assert (scores.hota, scores.idf1, scores.mota, scores.id_switches) == pytest.approx((1.0, 1.0, 1.0, 0))
    assert scores.merged_ids == 0 and scores.fragmentations == 0
    assert scores.gt_tracks == len(truth[0]) and scores.frames == 40


def test_swapped_identities_count_as_two_switches(tmp_path, truth):
    first, second = truth[0][0].track_id, truth[0][1].track_id
    swap = {first: second, second: first}
    swapped = [
        [item._replace(track_id=swap.get(item.track_id, item.track_id)) if frame >= 20 else item for item in objects]
        for frame, objects in enumerate(truth)
    ]
    scores = score(tmp_path, truth, swapped)
    assert scores.id_switches == 2
    assert scores.idf1 < 1.0 and scores.hota < 1.0
    assert scores.mota == pytest.approx(1.0 - 2 / sum(len(objects) for objects in truth))


def test_an_id_handed_from_one_person_to_the_next_is_a_merge_not_a_switch(tmp_path, truth):
    # The first object leaves after frame 19 and the second appears at frame 20, both under the tracker's id 1:
    # the newcomer who takes the id of someone who left. No ground-truth track ever changed its id.
    first, second = truth[0][0].track_id, truth[0][1].track_id
    handed_over = [[item for item in objects if item.track_id == (first if frame < 20 else second)]
                   for frame, objects in enumerate(truth)]
    one_id = [[item._replace(track_id=1) for item in objects] for objects in handed_over]
    scores = score(tmp_path, handed_over, one_id)
    assert scores.merged_ids == 1 and scores.id_switches == 0 and scores.idf1 < 1.0


def test_a_merge_beside_a_switch(tmp_path, truth):
    # The tracker's id of the first object also covers the second from frame 20 on, while the first goes unseen.
    first, second = truth[0][0].track_id, truth[0][1].track_id
    merged = [[item._replace(track_id=first) if item.track_id == second and frame >= 20 else item
               for item in objects if not (item.track_id == first and frame >= 20)]
              for frame, objects in enumerate(truth)]
    scores = score(tmp_path, truth, merged)
    assert scores.merged_ids == 1 and scores.id_switches == 1


def test_a_gap_in_a_track_is_a_fragmentation(tmp_path, truth):
    first = truth[0][0].track_id
    gapped = [[item for item in objects if not (item.track_id == first and 10 <= frame < 15)]
              for frame, objects in enumerate(truth)]
    scores = score(tmp_path, truth, gapped)
    assert scores.fragmentations == 1 and scores.id_switches == 0 and scores.merged_ids == 0


def test_tracker_on_noisy_truth_meets_the_identity_targets(tmp_path):
    """The issue's simulated detector (NoiseConfig's defaults) on the default scenario."""
    config = TrackingEvalConfig(videos=8, frames=60, seed=40)
    scores = evaluate_on_synthetic_videos(tmp_path, config, noise=NoiseConfig(), baselines=()).ours
    assert scores.gt_tracks >= 20
    assert scores.idf1 >= 0.90
    assert switches_per_20_tracks(scores) <= 1.0
    assert scores.mota >= 0.85


def test_evaluation_needs_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match="one of a detector, a recording of one and a noise model"):
        evaluate_on_synthetic_videos(tmp_path, TrackingEvalConfig(videos=1, frames=2))


def test_coverage_counts_each_visibility_band_as_the_tracker_and_the_detector_cover_it(tmp_path):
    from perception.tracking.coverage import Coverage, read_mot_boxes
    from perception.tracking.records import mot_lines
    from perception.tracking.tracker import Track
    from perception.training.synthetic import TrackedObject
    from perception.types import Detections

    person = [TrackedObject(1, "person", (0.0, 0.0, 10.0, 20.0), 1.0),  # in full view: found, detected and tracked
              TrackedObject(2, "person", (40.0, 0.0, 50.0, 20.0), 0.5),  # half hidden: found at a low score only
              TrackedObject(3, "person", (80.0, 0.0, 90.0, 20.0), 0.1)]  # all but hidden: a box of another phrase
    detections = Detections(np.array([[0, 0, 10, 19], [40, 1, 50, 21], [80, 0, 90, 20], [0, 30, 9, 40]], np.float32),
                            np.array([0.8, 0.2, 0.9, 0.9], np.float32), ["person", "person", "dog", "person"])
    # Our tracks: on the first person and, coasting, at IoU 1/3 with the second (not covering it).
    tracks = [Track(7, "person", 0.8, np.array([0, 0, 10, 20], np.float32), 5, True),
              Track(8, "person", 0.2, np.array([45, 0, 55, 20], np.float32), 9, False)]
    (tmp_path / "ours.txt").write_text(mot_lines(1, tracks))
    tracked = read_mot_boxes(tmp_path / "ours.txt", 2)
    assert len(tracked[0]) == 0 and np.allclose(tracked[1], [[0, 0, 10, 20], [45, 0, 55, 20]])
    coverage = Coverage()
    coverage.add(person, detections, tracked[1], box_threshold=0.35)
    coverage.add([], Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), []), tracked[0], 0.35)
    report = coverage.as_dict()
    assert list(report) == ["0.8-1.0", "0.6-0.8", "0.4-0.6", "0.2-0.4", "0.0-0.2"]
    assert report["0.8-1.0"] == {"objects": 1, "tracked": 1.0, "detected": 1.0, "found": 1.0}
    assert report["0.4-0.6"] == {"objects": 1, "tracked": 0.0, "detected": 0.0, "found": 1.0}
    assert report["0.0-0.2"] == {"objects": 1, "tracked": 0.0, "detected": 0.0, "found": 0.0}
    assert report["0.6-0.8"] == {"objects": 0, "tracked": None, "detected": None, "found": None}
