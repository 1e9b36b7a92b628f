"""The bundled models really detect, and ground: what the prompt names decides what is found."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.boxes import box_iou
from perception.detector import GroundingDinoDetector
from perception.eval.grounding import EVAL_FIRST_SEED
from perception.training.synthetic import generate_scene
from perception.training.train_bundled import VOCABULARY
from perception.weights import BUNDLED_MODEL_DIR

# Held-out scenes (training uses seeds from 1,000,000 on) with at least two different phrases.
SCENE_SEEDS = range(EVAL_FIRST_SEED + 1000, EVAL_FIRST_SEED + 1040)


@pytest.fixture(scope="module", params=["bundled", "bundled:crowds"])
def detector(request):
    assert (BUNDLED_MODEL_DIR / "config.json").is_file(), f"the bundled model is missing from {BUNDLED_MODEL_DIR}"
    return GroundingDinoDetector.from_pretrained(request.param)


def scenes_with_two_phrases():
    for seed in SCENE_SEEDS:
        scene = generate_scene(seed, (256, 256))
        visible = [obj for obj in scene.objects if obj.visibility > 0.9]
        phrases = sorted({obj.phrase for obj in visible})
        if len(phrases) >= 2 and all(sum(o.phrase == p for o in scene.objects) == 1 for p in phrases[:2]):
            yield scene, [next(o for o in visible if o.phrase == p) for p in phrases[:2]]


def test_the_crowd_model_is_what_loads_by_default():
    default = GroundingDinoDetector.from_pretrained(None)
    assert default.description.startswith("bundled crowd model")
    assert default.config.preprocess.shortest_edge == 256


def test_the_python_api_takes_the_weights_tuned_threshold_unless_given_a_config(caplog):
    """As the CLI and the node do: the crowd model's tuned_settings.yaml says 0.4; a config given is kept as it is,
    and the first bundled model, which has no such file, keeps the default 0.35."""
    from perception.detector import DetectorConfig

    with caplog.at_level("INFO", logger="perception.detector"):
        tuned = GroundingDinoDetector.from_pretrained(None, dtype="float32")
    assert tuned.box_threshold == 0.4
    assert "tuned_settings.yaml" in caplog.text and "box_threshold 0.4" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="perception.detector"):
        given = GroundingDinoDetector.from_pretrained(None, dtype="float32", config=DetectorConfig())
        first = GroundingDinoDetector.from_pretrained("bundled", dtype="float32")
    assert given.box_threshold == first.box_threshold == DetectorConfig().box_threshold == 0.35
    assert "tuned" not in caplog.text


def test_both_bundled_models_ask_for_the_size_they_were_trained_at(detector):
    assert detector.config.preprocess.shortest_edge == detector.config.preprocess.longest_edge == 256


def test_prompts_naming_different_objects_find_those_objects(detector):
    found, tried = 0, 0
    for scene, objects in scenes_with_two_phrases():
        for target in objects:
            tried += 1
            detector.set_prompt(f"{target.phrase} .")
            (result,) = detector.detect([scene.image])
            if len(result) == 0:
                continue
            iou = box_iou(torch.from_numpy(result.boxes[:1]), torch.tensor([target.box], dtype=torch.float32))
            found += int(result.labels[0] == target.phrase and float(iou) > 0.7)
    assert tried >= 20
    assert found / tried >= 0.9, f"{found} of {tried} prompts found their object"


def test_a_prompt_of_absent_things_finds_nothing(detector):
    # A quick check on 20 scenes; the issue-4 target (90% of absent-only prompts return nothing) is
    # asserted on 500 scenes below, where one scene is 0.2%, not 5%. The bundled model (the crowd stage's average):
    # 18 of 20 here, 90.2% on the 500; the 9500-iteration first stage alone: 17 of 20, 92.6%; the 7000-iteration
    # model before it: 14 of 20, 82.4%.
    empty, tried = 0, 0
    for seed in SCENE_SEEDS[:20]:
        scene = generate_scene(seed, (256, 256))
        absent = [phrase for phrase in VOCABULARY if phrase not in scene.labels]
        rng = np.random.default_rng(seed)
        detector.set_prompt(" . ".join(rng.choice(absent, size=4, replace=False)) + " .")
        (result,) = detector.detect([scene.image])
        tried += 1
        empty += int(len(result) == 0)
    assert empty / tried >= 0.8, f"only {empty} of {tried} absent-only prompts found nothing"


@pytest.mark.slow
def test_detection_and_absent_only_targets_on_500_held_out_scenes(capsys):
    import json

    from perception.cli.main import main

    # The default weights (bundled:crowds): AP 0.892, AP50 0.967, 94.6% at its threshold 0.4 (bfloat16); the first
    # bundled model (--weights bundled) 0.89, 0.97, 90.2% at 0.35.
    assert main(["eval", "detection", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["AP50"] >= 0.90 and result["AP"] >= 0.65, result
    assert result["absent_only_empty"] >= 0.90, result  # absent-only prompts find nothing at the weights' threshold


@pytest.mark.slow
def test_the_bundled_crowd_model_finds_most_of_a_crowd_of_one_phrase(capsys):
    """Crowds of 6-15 walkers of one phrase (100 images, the evaluation's own seeds). The bundled model finds half
    of them (0.51-0.56 on fresh seeds); bundled:crowds, trained longer on crowds, about 0.9 (0.904-0.930 on three
    fresh seeds and 0.904 on these at 0.35 in bfloat16; at its tuned 0.4 0.928-0.933 fresh, 0.898 on these; its
    weights before the crowds-pillars stage 0.912, before crowds-amodal 0.893, at 0.35): this guards the step, under
    the 0.90 goal by the spread of a seed."""
    import json

    from perception.cli.main import main

    assert main(["eval", "detection", "--scenario", "crowd", "--weights", "bundled:crowds", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["weights"].startswith("bundled crowd model")
    assert result["recall"] >= 0.85 and result["precision"] >= 0.7, result


def test_eval_detection_prints_ap_as_json(capsys):
    import json

    from perception.cli.main import main

    assert main(["eval", "detection", "--json", "--images", "20", "--weights", "bundled"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 < result["AP50"] <= 1.0 and 0.0 < result["AP"] <= result["AP50"]
    assert result["images"] == 20 and result["weights"].startswith("bundled model")
    assert 0.0 <= result["absent_only_empty"] <= 1.0 and result["absent_only_threshold"] == 0.35


def test_one_size_option_changes_that_size_and_keeps_the_checkpoints_other():
    import argparse

    from perception.cli.model_args import add_detector_arguments, build_detector

    parser = argparse.ArgumentParser()
    add_detector_arguments(parser)
    detector = build_detector(parser.parse_args(["--shortest-edge", "200"]))
    assert (detector.config.preprocess.shortest_edge, detector.config.preprocess.longest_edge) == (200, 256)
    detector = build_detector(parser.parse_args(["--longest-edge", "320"]))
    assert (detector.config.preprocess.shortest_edge, detector.config.preprocess.longest_edge) == (256, 320)


def test_absent_only_prompts_are_judged_at_the_threshold_the_weights_run_at(capsys):
    """bundled:crowds runs at its tuned box threshold (0.4): an absent-only prompt is empty when nothing passes that,
    as a user running it sees; AP still ranks every box from 0.05."""
    import json

    from perception.cli.main import main

    assert main(["eval", "detection", "--dtype", "float32", "--images", "4", "--json"]) == 0  # the default
    result = json.loads(capsys.readouterr().out)
    assert result["absent_only_threshold"] == 0.4 and result["weights"].startswith("bundled crowd model")
