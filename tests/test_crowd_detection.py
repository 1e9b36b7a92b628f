"""Crowd still images for training and for `gdino eval detection --scenario crowd`: what they hold, how the
training mix draws them, and how a walker counts as found."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from perception.eval.crowd_detection import match_count
from perception.training.crowds import CrowdConfig, generate_crowd_scene
from perception.training.dataset import CrowdGroundingDataset, MixtureDataset, SyntheticGroundingDataset
from perception.training.synthetic import Scene, SceneObject
from perception.types import Detections


def test_crowd_scene_keeps_the_walkers_it_shows():
    scene = generate_crowd_scene(11, (240, 320), CrowdConfig(min_people=8, max_people=8), min_visibility=0.3)
    again = generate_crowd_scene(11, (240, 320), CrowdConfig(min_people=8, max_people=8), min_visibility=0.3)
    assert np.array_equal(scene.image, again.image) and scene.objects == again.objects
    assert scene.image.shape == (240, 320, 3)
    assert len(scene.objects) >= 4 and set(scene.labels) == {"green circle"}
    assert all(item.visibility >= 0.3 for item in scene.objects)
    everyone = generate_crowd_scene(11, (240, 320), CrowdConfig(min_people=8, max_people=8), min_visibility=0.0)
    assert len(everyone.objects) >= len(scene.objects)
    boxes = scene.boxes
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 240).all()


def test_crowd_dataset_draws_a_phrase_per_seed_and_mixes_some():
    dataset = CrowdGroundingDataset(5_000, 40, mixed_share=0.5)
    samples = [dataset[index] for index in range(12)]
    assert all(len(sample.labels) >= 1 for sample in samples)
    assert len({sample.labels[0] for sample in samples}) > 3  # not one phrase for every crowd
    assert any(len(set(sample.labels)) > 1 for sample in samples)  # some crowds are mixed
    assert max(len(sample.labels) for sample in samples) >= 8
    with pytest.raises(ValueError, match="mixed_share"):
        CrowdGroundingDataset(0, 10, mixed_share=1.5)
    with pytest.raises(ValueError, match="max_pillars"):
        CrowdGroundingDataset(0, 10, max_pillars=11)


def test_crowd_samples_and_their_targets_carry_how_much_of_each_walker_shows():
    """The box losses weigh a partly hidden walker by its visibility (LossConfig.hidden_box_weight), so it must
    reach the target of the walkers the prompt names, in their order; scenes without it count as fully visible."""
    from perception.training.prompts import build_prompt
    from perception.training.targets import build_target

    sample = CrowdGroundingDataset(5_000, 40, mixed_share=1.0)[3]
    assert len(set(sample.labels)) > 1
    assert sample.visibility.shape == (len(sample.labels),) and (sample.visibility < 1).any()
    assert ((sample.visibility >= 0.3) & (sample.visibility <= 1)).all()
    crowd = sample.labels[0]
    prompt = build_prompt([crowd])
    target = build_target(sample, prompt, np.ones((1, 4), bool))
    named = [index for index, label in enumerate(sample.labels) if label == crowd]
    assert torch.equal(target.visibility, torch.from_numpy(sample.visibility[named]))
    assert torch.equal(target.padded(6).visibility, target.visibility)
    plain = SyntheticGroundingDataset(2, 1, (200, 300))[0]
    assert plain.visibility.shape == (len(plain.labels),) and (plain.visibility <= 1).all()


def test_mixture_is_deterministic_and_follows_its_weights():
    class Tagged:
        def __init__(self, tag):
            self.tag = tag

        def __len__(self):
            return 10_000

        def __getitem__(self, index):
            return (self.tag, index)

    mixture = MixtureDataset([Tagged("scene"), Tagged("crowd")], [0.65, 0.35])
    draws = [mixture[index] for index in range(2000)]
    assert draws == [mixture[index] for index in range(2000)]
    assert all(index == position for position, (_, index) in enumerate(draws))
    share = sum(tag == "crowd" for tag, _ in draws) / len(draws)
    assert 0.31 < share < 0.39
    assert len(MixtureDataset([SyntheticGroundingDataset(0, 5), Tagged("x")], [1, 1])) == 5
    with pytest.raises(ValueError):
        MixtureDataset([Tagged("a")], [0.5, 0.5])


def _scene(*objects):
    return Scene(np.zeros((100, 100, 3), np.uint8), [SceneObject(*item) for item in objects])


def test_a_walker_is_found_once_by_a_box_of_its_phrase():
    scene = _scene(("green circle", (10, 10, 30, 50), 1.0), ("green circle", (12, 10, 32, 50), 0.9),
                   ("green circle", (60, 10, 80, 50), 0.2))  # the third mostly hidden: not counted in recall
    # Two boxes on the first pair (each takes one walker), one of another phrase, one on the hidden walker.
    detections = Detections(np.array([[10, 10, 30, 50], [11, 10, 31, 50], [10, 10, 30, 50], [60, 10, 80, 50]]),
                            np.array([0.9, 0.8, 0.95, 0.5]), ["green circle", "green circle", "red circle", "green circle"])
    assert match_count(detections, scene) == (2, 2, 3)
    # One box on the pair finds one walker; the duplicate of the same box finds the other only if it overlaps it.
    assert match_count(Detections(np.array([[11, 10, 31, 50]]), np.array([0.9]), ["green circle"]), scene) == (1, 2, 1)
    assert match_count(Detections(), scene) == (0, 2, 0)
    assert match_count(Detections(), _scene()) == (0, 0, 0)


def test_eval_detection_crowd_cli_reports_recall_next_to_ap():
    result = subprocess.run([sys.executable, "-m", "perception.cli.main", "eval", "detection", "--scenario", "crowd",
                             "--images", "2", "--json"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["scenario"] == "crowd" and metrics["images"] == 2
    assert metrics["visible_walkers"] > 0 and 0 <= metrics["recall"] <= 1 and 0 <= metrics["precision"] <= 1
    assert 0 <= metrics["AP50"] <= 1


def test_training_stages_mix_crowds_as_they_say(capsys):
    from perception.training.train_bundled import STAGES, main, stage_dataset

    assert isinstance(stage_dataset("scenes"), SyntheticGroundingDataset)
    for stage in ("crowds", "crowds-long", "crowds-amodal", "crowds-pillars", "mixed"):
        mixture = stage_dataset(stage)
        assert isinstance(mixture.parts[1], CrowdGroundingDataset)
        share = STAGES[stage]["crowd_share"]
        assert np.allclose(np.diff(mixture.cumulative, prepend=0.0), [1 - share, share]) and 0 < share < 0.5
    # "mixed" trains from scratch like "scenes"; the crowd stages go on from an exported model.
    for argv in (["--stage", "mixed", "--init", "x"], ["--stage", "crowds"], ["--stage", "crowds-long"],
                 ["--stage", "crowds-amodal"], ["--stage", "crowds-pillars"]):
        with pytest.raises(SystemExit) as raised:
            main(["--output", "unused", *argv])
        assert raised.value.code == 2 and "--init" in capsys.readouterr().err
    refused = [(["--workers", "-1"], "--workers"), (["--seconds", "0"], "--seconds"),
               (["--seconds", "60", "--iterations", "10"], "--seconds")]
    if not torch.cuda.is_available():
        refused.append((["--device", "cuda"], "finds no GPU; train on --device cpu"))
    for argv, reason in refused:
        with pytest.raises(SystemExit) as raised:
            main(["--output", "unused", *argv])
        assert raised.value.code == 2 and reason in capsys.readouterr().err


def test_the_pillar_stage_shows_more_walkers_partly_hidden():
    """crowds-pillars draws its crowd images with up to 5 pillars (the other stages up to 2), so more of their
    walkers show only in part: the case the crowd model's boxes fit worst (a box centred on the visible part)."""
    from perception.training.train_bundled import stage_dataset

    def visibility(stage):
        crowds = stage_dataset(stage).parts[1]
        return np.concatenate([crowds[index].visibility for index in range(40)])

    before, pillars = visibility("crowds-amodal"), visibility("crowds-pillars")
    assert (pillars < 0.8).mean() > 1.2 * (before < 0.8).mean()
    assert pillars.mean() < before.mean() - 0.02


def test_the_crowd_stage_exports_its_share_of_the_init_weights(tmp_path, capsys):
    """--init-share blends the trained weights with the --init model's at export (weight-space ensemble); the
    second run resumes the finished stage from its checkpoint, so only the export differs."""
    from safetensors.torch import load_file

    from perception.model.grounding_dino import GroundingDino
    from perception.model.hf_export import save_hf_checkpoint
    from perception.training.bundled import bundled_model_config
    from perception.training.train_bundled import main
    from perception.weights import BUNDLED_MODEL_DIR

    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    other = save_hf_checkpoint(GroundingDino(bundled_model_config()), tmp_path / "other", dtype=torch.float16)
    stage = ["--stage", "crowds", "--output", str(tmp_path / "run"), "--iterations", "1", "--batch-size", "1"]
    assert main([*stage, "--init", str(BUNDLED_MODEL_DIR), "--init-share", "0", "--export", str(tmp_path / "a")]) == 0
    assert main([*stage, "--init", str(other), "--init-share", "0.25", "--export", str(tmp_path / "b")]) == 0
    trained, blend, init = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "a", tmp_path / "b", other))
    assert trained.keys() == blend.keys()
    moved = 0
    for name, tensor in blend.items():
        if tensor.is_floating_point():
            expected = 0.75 * trained[name].float() + 0.25 * init[name].float()
            torch.testing.assert_close(tensor.float(), expected, rtol=2e-3, atol=2e-4, msg=name)
            moved += int(not torch.allclose(tensor.float(), trained[name].float(), rtol=1e-2, atol=1e-3))
    assert moved > len(blend) // 2  # the init weights are unlike the trained ones: the blend shows
    for argv in (["--init-share", "1"], ["--init-share", "-0.1"], ["--stage", "scenes", "--init-share", "0.5"]):
        with pytest.raises(SystemExit) as raised:
            main(["--output", "unused", "--stage", "crowds", "--init", "x", *argv])
        assert raised.value.code == 2 and "--init-share" in capsys.readouterr().err
