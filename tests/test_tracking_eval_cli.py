"""`gdino eval tracking --json`: one JSON object with TrackEval's scores, for the tracker on noisy truth
and for the whole pipeline with a model."""
from __future__ import annotations

import json

import pytest

from perception.cli.main import main
from perception.weights import BUNDLED_MODEL_DIR

TINY_MODEL = ["--weights", "random:tiny", "--shortest-edge", "64", "--longest-edge", "96"]


def eval_tracking(capsys, *args: str) -> dict:
    assert main(["eval", "tracking", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout


def test_noisy_truth_scores(capsys):
    result = eval_tracking(capsys, "--detections", "noisy-truth", "--videos", "3", "--frames", "40", "--seed", "7")
    assert result["detections"] == "noisy-truth" and result["weights"] is None
    assert 0.7 <= result["HOTA"] <= 1 and 0.85 <= result["IDF1"] <= 1 and 0.8 <= result["MOTA"] <= 1
    switches_per_20 = 20 * result["id_switches"] / result["gt_tracks"]
    assert result["id_switches_per_20_gt_tracks"] == pytest.approx(switches_per_20, abs=1e-3)
    assert result["frames"] == 120


def test_pipeline_with_a_model_is_scored(capsys, tmp_path):
    result = eval_tracking(capsys, "--videos", "1", "--frames", "12", "--size", "160x120", "--work-dir", str(tmp_path),
                           *TINY_MODEL)
    assert "RANDOM" in result["weights"]
    assert 0 <= result["HOTA"] <= 1 and 0 <= result["IDF1"] <= 1 and result["MOTA"] <= 1
    assert result["gt_tracks"] > 0 and result["frames"] == 12
    assert len((tmp_path / "clips" / "synthetic-0000.jsonl").read_text().splitlines()) == 12
    assert result["meets_targets"] is False  # random weights cannot track anything


@pytest.fixture(scope="module")
def bundled_on_24_videos() -> dict:
    # The command as the issue states it: its default is 24 videos (93 ground-truth tracks), where one switch
    # moves the rate per 20 tracks by 0.2 (by 0.65 on the 8 videos it used to default to).
    import contextlib
    import io

    assert (BUNDLED_MODEL_DIR / "config.json").is_file(), "the bundled model is missing"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["eval", "tracking", "--json"]) == 0
    result = json.loads(printed.getvalue())
    assert result["videos"] == 24 and result["gt_tracks"] == 93
    return result


@pytest.mark.slow
def test_bundled_model_meets_the_identity_f1_target_on_24_videos(bundled_on_24_videos):
    assert bundled_on_24_videos["IDF1"] >= 0.90, bundled_on_24_videos  # measured 0.924


@pytest.mark.slow
def test_bundled_model_meets_the_identity_switch_target_on_24_videos(bundled_on_24_videos):
    # measured 2 switches (0.43 per 20 tracks); 0 to 1.28 on six other sets of 24 videos, 0.57 pooled (README)
    assert bundled_on_24_videos["id_switches_per_20_gt_tracks"] <= 1.0, bundled_on_24_videos


def test_bad_settings_are_one_line_errors(capsys):
    assert main(["eval", "tracking", "--json", "--detections", "noisy-truth", "--size", "321x240"]) == 2
    assert "eval size must be even numbers >= 64" in capsys.readouterr().err
