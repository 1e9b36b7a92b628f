"""present_phrase_threshold: a box under the box threshold is reported when its phrase is there (another box of
it passes the box threshold) and it is not a duplicate of a reported box of that phrase."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.detector import DetectorConfig, GroundingDinoDetector
from perception.model.config import tiny_model_config
from perception.postprocess import PostprocessConfig, at_threshold, present_phrase_keep
from perception.preprocess import PreprocessConfig
from perception.types import Detections


def crowd_detections() -> Detections:
    """Sorted by score. Three people (one sure, two unsure; one unsure box is a duplicate of the sure one),
    an unsure dog whose phrase has no sure box, an unsure unlabelled box and a box under every floor."""
    rows = [(0.80, (0, 0, 10, 20), "person"),
            (0.33, (1, 0, 11, 20), "person"),  # IoU 0.82 with the first: a duplicate
            (0.30, (40, 0, 50, 20), "person"),  # beside it: a second person
            (0.29, (80, 0, 90, 20), "dog"),
            (0.28, (120, 0, 130, 20), ""),
            (0.27, (44, 0, 54, 20), "person"),  # IoU 0.43 with the second person: hidden behind, kept
            (0.10, (160, 0, 170, 20), "person")]
    scores, boxes, labels = zip(*rows)
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), list(labels))


def test_a_present_phrase_keeps_its_unsure_boxes_that_are_not_duplicates():
    kept = present_phrase_keep(crowd_detections(), box_threshold=0.35, floor=0.25, iou_threshold=0.5)
    assert kept == [0, 2, 5]


def test_the_overlap_bound_decides_which_neighbours_are_duplicates():
    assert present_phrase_keep(crowd_detections(), 0.35, 0.25, iou_threshold=0.4) == [0, 2]
    assert present_phrase_keep(crowd_detections(), 0.35, 0.25, iou_threshold=1.0) == [0, 1, 2, 5]


def test_without_a_sure_box_nothing_under_the_box_threshold_is_reported():
    unsure = crowd_detections()
    kept = present_phrase_keep(Detections(unsure.boxes[1:], unsure.scores[1:], unsure.labels[1:]), 0.35, 0.25, 0.5)
    assert kept == []


def test_unsorted_detections_are_refused():
    detections = crowd_detections()
    with pytest.raises(ValueError, match="sorted by score"):
        present_phrase_keep(Detections(detections.boxes[::-1], detections.scores[::-1], detections.labels[::-1]),
                            0.35, 0.25, 0.5)


@pytest.mark.parametrize("config, expected", [
    (PostprocessConfig(), [0, 2, 5]),
    (PostprocessConfig(present_phrase_threshold=None), [0]),
    (PostprocessConfig(present_phrase_threshold=0.9), [0]),  # at or above box_threshold: off
    (PostprocessConfig(present_phrase_threshold=0.05), [0, 2, 5]),  # not under text_threshold: no phrase there
    (PostprocessConfig(present_phrase_threshold=0.05, text_threshold=0.05), [0, 2, 5, 6]),
    (PostprocessConfig(label_mode="tokens"), [0]),  # the reference's rule, unchanged
])
def test_at_threshold_follows_the_config(config, expected):
    detections = crowd_detections()
    assert at_threshold(detections, config).scores.tolist() == detections.scores[expected].tolist()


@pytest.mark.parametrize("name, value", [("present_phrase_threshold", 1.5), ("present_phrase_threshold", -0.1),
                                         ("present_phrase_iou", 0.0), ("present_phrase_iou", 1.2)])
def test_bad_settings_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        PostprocessConfig(**{name: value})


@pytest.mark.numeric
def test_the_detector_reports_what_at_threshold_selects_from_a_lowered_call():
    """The crowd evaluation counts recall with at_threshold on detections of a lowered call: it must equal what
    the detector itself reports. The threshold sits at the scores' 80th percentile of random weights, so
    both rules select something."""
    torch.manual_seed(0)
    detector = GroundingDinoDetector.from_model_config(tiny_model_config(), config=DetectorConfig(
        preprocess=PreprocessConfig(shortest_edge=96, longest_edge=160), postprocess=PostprocessConfig(box_threshold=0.0)))
    detector.set_prompt("a person . a dog . a cat .")
    image = [np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)]
    everything = detector.detect(image)[0]
    cut = float(np.quantile(everything.scores, 0.8))
    detector.config.replace_postprocess(box_threshold=cut, present_phrase_threshold=float(np.quantile(everything.scores, 0.4)),
                                        present_phrase_iou=0.7)
    reported = detector.detect(image)[0]
    selected = at_threshold(detector.detect(image, box_threshold=0.0)[0], detector.config.postprocess)
    assert (reported.scores <= cut).any() and (reported.scores > cut).any()
    assert reported.labels == selected.labels
    np.testing.assert_array_equal(reported.boxes, selected.boxes)
    np.testing.assert_array_equal(reported.scores, selected.scores)
