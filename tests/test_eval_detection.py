"""COCO AP with pycocotools on generated ground truth: perfect, shifted, mislabelled and missing detections."""
import numpy as np
import pytest

from perception.eval.detection import evaluate_detections
from perception.training.synthetic import generate_scene
from perception.types import Detections


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(seed, (160, 160)) for seed in range(40)]


def _detections(scenes, shift=0.0, labels=None):
    return [
        Detections(scene.boxes + shift, np.linspace(0.9, 0.5, len(scene.objects)), labels(scene) if labels else scene.labels)
        for scene in scenes
    ]


def test_perfect_detections_score_one(scenes):
    result = evaluate_detections(_detections(scenes), scenes)
    assert result["AP"] == pytest.approx(1.0) and result["AP50"] == pytest.approx(1.0)
    assert result["ground_truth"] == result["detections"] == sum(len(scene.objects) for scene in scenes)


def test_shifted_boxes_lose_strict_ap_first(scenes):
    # 4 px to the right on objects at least 20 px wide: IoU >= 16/24, above 0.5 but below 0.9 for most.
    result = evaluate_detections(_detections(scenes, shift=np.array([4.0, 0.0, 4.0, 0.0])), scenes)
    assert result["AP50"] == pytest.approx(1.0)
    assert result["AP"] < 0.8
    far = evaluate_detections(_detections(scenes, shift=100.0), scenes)
    assert far["AP50"] < 0.05


def test_right_box_wrong_phrase_is_a_false_positive(scenes):
    swapped = evaluate_detections(_detections(scenes, labels=lambda scene: [label[::-1] for label in scene.labels]), scenes)
    assert swapped["AP"] == 0.0
    # Each box also reported, more confidently, with another phrase of the data set that is not there.
    phrases = sorted({label for scene in scenes for label in scene.labels})
    other = {phrase: phrases[(index + 1) % len(phrases)] for index, phrase in enumerate(phrases)}
    extra = [
        Detections(np.concatenate([d.boxes, d.boxes]), np.concatenate([d.scores, d.scores + 0.05]), d.labels + [other[label] for label in d.labels])
        for d in _detections(scenes)
    ]
    assert evaluate_detections(extra, scenes)["AP"] < 0.7


def test_no_detections_and_bad_inputs(scenes):
    assert evaluate_detections([Detections() for _ in scenes], scenes)["AP"] == 0.0
    with pytest.raises(ValueError, match="prediction lists"):
        evaluate_detections([Detections()], scenes)
    with pytest.raises(ValueError, match="no box"):
        evaluate_detections([Detections()], [Detections()])
