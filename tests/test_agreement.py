"""Agreement of a lower-precision detector with float32 on the same inputs (perception.eval.agreement), and the
keys `gdino eval detection` and `gdino eval tracking` print with --dtype."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception.cli.main import main
from perception.eval.agreement import Agreement, ComparedDetector
from perception.types import Detections

TINY_MODEL = ["--weights", "random:tiny", "--shortest-edge", "64", "--longest-edge", "96"]


def _detections(boxes, scores, labels) -> Detections:
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), labels)


def test_same_detections_agree_fully():
    found = _detections([[10, 10, 50, 50], [60, 60, 90, 100]], [0.8, 0.4], ["red mug", "dog"])
    agreement = Agreement()
    agreement.add(found, found)
    assert agreement.as_dict() == {"agreement_with_float32": 1.0, "max_score_difference_with_float32": 0.0,
                                   "float32_detections": 2, "agreement_counted_from": 0.35}


def test_float32_detections_below_the_box_threshold_are_not_counted_but_can_match():
    float32 = _detections([[0, 0, 100, 100], [200, 0, 300, 100]], [0.36, 0.2], ["dog", "cat"])
    other = _detections([[0, 0, 100, 100]], [0.3], ["dog"])  # crossed the threshold by 0.06
    agreement = Agreement(counted_from=0.35)
    agreement.add(float32, other)
    assert agreement.as_dict()["float32_detections"] == 1 and agreement.as_dict()["agreement_with_float32"] == 1.0
    assert agreement.as_dict()["max_score_difference_with_float32"] == pytest.approx(0.06, abs=1e-6)


def test_a_match_needs_the_same_phrase_and_iou_of_at_least_0_9():
    float32 = _detections([[0, 0, 100, 100], [200, 0, 300, 100], [0, 200, 100, 300]], [0.9, 0.8, 0.7],
                          ["red mug", "dog", "cat"])
    other = _detections([[0, 0, 100, 95],     # IoU 0.95, score 0.1 lower: a match
                         [200, 0, 300, 85],   # IoU 0.85: no match
                         [0, 200, 100, 300]],  # same box, another phrase: no match
                        [0.8, 0.8, 0.7], ["red mug", "dog", "dog"])
    agreement = Agreement()
    agreement.add(float32, other)
    result = agreement.as_dict()
    assert result["agreement_with_float32"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["max_score_difference_with_float32"] == pytest.approx(0.1, abs=1e-6)


def test_one_detection_matches_one_float32_detection_only():
    float32 = _detections([[0, 0, 100, 100], [0, 0, 100, 99]], [0.9, 0.5], ["dog", "dog"])
    other = _detections([[0, 0, 100, 100]], [0.85], ["dog"])
    agreement = Agreement()
    agreement.add(float32, other)
    agreement.add(_detections([], [], []), other)  # an image where float32 found nothing adds nothing
    assert agreement.as_dict()["agreement_with_float32"] == 0.5
    assert agreement.as_dict()["float32_detections"] == 2


def test_nothing_found_in_float32_gives_no_share():
    agreement = Agreement()
    agreement.add(_detections([], [], []), _detections([[0, 0, 5, 5]], [0.5], ["dog"]))
    assert agreement.as_dict()["agreement_with_float32"] is None


def test_compared_detector_answers_as_the_detector_and_runs_float32_on_the_same_call():
    from perception.detector import GroundingDinoDetector

    def tiny(dtype: str) -> GroundingDinoDetector:
        from perception.detector import DetectorConfig
        from perception.preprocess import PreprocessConfig

        config = DetectorConfig(preprocess=PreprocessConfig(shortest_edge=64, longest_edge=96))
        return GroundingDinoDetector.from_pretrained("random:tiny", dtype=dtype, config=config)

    bfloat16, float32 = tiny("bfloat16"), tiny("float32")
    compared = ComparedDetector(bfloat16, float32, counted_from=0.0)
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    assert compared.set_prompt("a dog . a red mug .") == ["a dog", "a red mug"]
    found = compared.detect([image], box_threshold=0.0)
    expected = bfloat16.detect([image], box_threshold=0.0)
    np.testing.assert_array_equal(found[0].boxes, expected[0].boxes)
    # Threshold 0: every query is a detection in both, so float32's count is the model's query count.
    assert compared.agreement.float32_detections == len(float32.detect([image], box_threshold=0.0)[0]) > 0
    assert compared.dtype == bfloat16.dtype and compared.box_threshold == bfloat16.box_threshold
    assert compared.seconds["float32"] > 0 and compared.seconds["other"] > 0


def test_eval_detection_reports_agreement_with_float32(capsys):
    assert main(["eval", "detection", "--json", "--images", "2", "--size", "96", "--dtype", "bfloat16",
                 *TINY_MODEL]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dtype"] == "bfloat16" and {"AP", "AP50"} <= set(result)
    assert 0 <= result["agreement_with_float32"] <= 1 and result["float32_detections"] > 0
    assert 0 <= result["max_score_difference_with_float32"] <= 1
    assert result["detector_seconds"]["bfloat16"] > 0 and result["detector_seconds"]["float32"] > 0


def test_eval_detection_in_float32_is_its_own_baseline(capsys):
    assert main(["eval", "detection", "--json", "--images", "1", "--size", "96", "--dtype", "float32",
                 *TINY_MODEL]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dtype"] == "float32" and result["agreement_with_float32"] is None


def test_eval_tracking_reports_agreement_with_float32(capsys):
    assert main(["eval", "tracking", "--json", "--videos", "1", "--frames", "4", "--size", "160x120",
                 "--dtype", "bfloat16", *TINY_MODEL]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dtype"] == "bfloat16" and "IDF1" in result
    assert 0 <= result["agreement_with_float32"] <= 1 and result["float32_detections"] > 0
