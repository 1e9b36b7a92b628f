"""The oracle's corrections of a recorded frame, by hand (perception.tracking.oracle)."""
from __future__ import annotations

import numpy as np
import pytest

from perception.tracking.oracle import ORACLE_SCORE, corrected
from perception.training.synthetic import TrackedObject
from perception.types import Detections

# Two walkers and a car. Walker 1 has two boxes (IoU 0.9 and 0.6 with it), walker 2 one weak box (IoU 0.64), the
# car none of its phrase; one box lies on nothing.
OBJECTS = [TrackedObject(1, "person", (0.0, 0.0, 10.0, 20.0), 1.0),
           TrackedObject(2, "person", (30.0, 0.0, 40.0, 20.0), 0.5),
           TrackedObject(3, "car", (60.0, 0.0, 80.0, 10.0), 1.0)]
FOUND = Detections(np.array([[0, 0, 10, 18], [0, 0, 10, 12], [30, 0, 38, 16], [100, 100, 110, 110],
                             [60, 0, 80, 10]], np.float32),
                   np.array([0.5, 0.45, 0.2, 0.3, 0.6], np.float32), ["person", "person", "person", "person", "dog"])


def test_scores_lifts_each_objects_best_box_of_its_phrase_and_keeps_the_rest():
    out = corrected(OBJECTS, FOUND, "scores")
    assert len(out) == 5 and list(out.scores) == sorted(out.scores, reverse=True)
    by_box = {tuple(box): (score, label) for box, score, label in zip(out.boxes.tolist(), out.scores, out.labels)}
    assert by_box[(0, 0, 10, 18)][0] == by_box[(30, 0, 38, 16)][0] == pytest.approx(ORACLE_SCORE)
    assert by_box[(0, 0, 10, 12)][0] == pytest.approx(0.45) and by_box[(100, 100, 110, 110)][0] == pytest.approx(0.3)
    assert by_box[(60, 0, 80, 10)] == (pytest.approx(0.6), "dog")  # another phrase's box is not the car's


def test_selection_keeps_one_box_per_found_object_and_truth_draws_it_exactly():
    selected = corrected(OBJECTS, FOUND, "selection")
    assert selected.boxes.tolist() == [[0, 0, 10, 18], [30, 0, 38, 16]] and selected.labels == ["person"] * 2
    assert np.allclose(selected.scores, ORACLE_SCORE)
    truth = corrected(OBJECTS, FOUND, "truth")
    assert truth.boxes.tolist() == [[0, 0, 10, 20], [30, 0, 40, 20]] and np.allclose(truth.scores, ORACLE_SCORE)
    # The input is left as it was.
    assert FOUND.boxes[0].tolist() == [0, 0, 10, 18] and FOUND.scores[2] == pytest.approx(0.2)


def test_two_objects_on_one_box_get_it_once_and_empty_frames_pass():
    pair = [TrackedObject(1, "person", (0.0, 0.0, 10.0, 20.0), 1.0),
            TrackedObject(2, "person", (0.0, 1.0, 10.0, 21.0), 0.3)]
    one = Detections(np.array([[0, 0, 10, 20]], np.float32), np.array([0.5], np.float32), ["person"])
    assert corrected(pair, one, "truth").boxes.tolist() == [[0, 0, 10, 20]]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [])
    assert len(corrected(pair, empty, "truth")) == 0 and len(corrected([], one, "selection")) == 0
    with pytest.raises(ValueError, match="oracle mode must be one of"):
        corrected(pair, one, "perfect")
