"""`gdino eval depth --json`: 3D centre errors from the bundled model's boxes and generated depth images, beside
the naive box median on the same boxes; and the evaluation's box sources (true boxes, none found)."""
from __future__ import annotations

import json

import pytest

from perception.cli.main import main
from perception.spatial.evaluation import evaluate_on_generated_scenes, true_boxes
from perception.training.rgbd import generate_rgbd_scene

ERRORS = {"missing", "median_relative_error", "p90_relative_error", "median_error_m", "p90_error_m"}
SEED, SCENES = 11, 3


def eval_depth(capsys, *args: str) -> dict:
    assert main(["eval", "depth", "--json", "--scenes", str(SCENES), "--seed", str(SEED), *args]) == 0
    return json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout


def half_visible_objects(first_seed: int, count: int) -> int:
    return sum(item.visibility >= 0.5 for seed in range(first_seed, first_seed + count)
               for item in generate_rgbd_scene(seed).objects)


def test_bundled_model_centres_beside_the_naive_box_median(capsys):
    millimetres = eval_depth(capsys)
    assert {"objects", "missed", "recall", "naive_box_median", "targets", "meets_targets", "weights"} | ERRORS <= set(
        millimetres)
    assert set(millimetres["naive_box_median"]) == ERRORS
    # Every object at least half visible is matched or missed, once; the bundled model finds most of them.
    assert millimetres["objects"] + millimetres["missed"] == half_visible_objects(SEED, SCENES)
    assert millimetres["recall"] == pytest.approx(millimetres["objects"] / half_visible_objects(SEED, SCENES), abs=1e-4)
    assert millimetres["recall"] >= 0.6 and millimetres["missing"] == 0
    assert 0 <= millimetres["median_relative_error"] <= millimetres["p90_relative_error"] <= 0.05
    assert millimetres["median_error_m"] <= millimetres["p90_error_m"]
    assert millimetres["meets_targets"] == (millimetres["median_relative_error"] <= 0.02
                                            and millimetres["p90_relative_error"] <= 0.05)
    # The same boxes through a 32FC1 image: the same objects, errors within the millimetre rounding.
    metres = eval_depth(capsys, "--encoding", "32FC1")
    assert metres["encoding"] == "32FC1" and millimetres["encoding"] == "16UC1"
    assert (metres["objects"], metres["missed"]) == (millimetres["objects"], millimetres["missed"])
    assert metres["median_error_m"] == pytest.approx(millimetres["median_error_m"], abs=0.002)


def test_scene_count_is_checked(capsys):
    assert main(["eval", "depth", "--scenes", "0"]) == 2
    assert "--scenes must be at least 1, got 0" in capsys.readouterr().err


def test_objects_without_a_box_are_missed_not_errors():
    none_found = evaluate_on_generated_scenes(4, first_seed=SEED, boxes=lambda scene, seed: [None] * len(scene.objects))
    assert none_found["missed"] == half_visible_objects(SEED, 4)
    assert none_found["estimate"]["objects"] == 0 and none_found["estimate"]["median_relative_error"] is None
    truth = evaluate_on_generated_scenes(4, first_seed=SEED, boxes=true_boxes())
    assert truth == evaluate_on_generated_scenes(4, first_seed=SEED)
    assert truth["missed"] == 0 and truth["estimate"]["objects"] == none_found["missed"]
    with pytest.raises(ValueError, match=r"box_jitter must be in \[0, 0.5\), got 0.5"):
        true_boxes(0.5)
