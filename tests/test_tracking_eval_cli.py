"""`gdino eval tracking --json`: one JSON object with TrackEval's scores for our tracker and its baselines, on
noisy truth and for the whole pipeline with a model, in every scenario."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception.cli.main import main
from perception.tracking.evaluation import RecordingDetector
from perception.training.crowds import generate_crowd_video
from perception.weights import BUNDLED_MODEL_DIR

TINY_MODEL = ["--weights", "random:tiny", "--shortest-edge", "64", "--longest-edge", "96"]
SCORES = {"HOTA", "IDF1", "MOTA", "id_switches", "merged_ids", "fragmentations", "gt_tracks", "frames",
          "id_switches_per_20_gt_tracks"}


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
    assert result["scenario"] == "default" and result["noise"]["dropout_frames"] == 3
    assert result["targets"] == {"IDF1": 0.90, "id_switches_per_20_gt_tracks": 1.0}
    assert set(result["baselines"]) == {"norfair", "bytetrack"}


def test_crowd_on_noisy_truth_reports_every_key_beside_both_baselines(capsys):
    result = eval_tracking(capsys, "--scenario", "crowd", "--detections", "noisy-truth", "--videos", "1",
                           "--frames", "40", "--dropout-frames", "4", "--false-positives", "0.1")
    assert SCORES <= set(result) and result["scenario"] == "crowd" and result["videos"] == 1
    assert result["noise"]["dropout_frames"] == 4 and result["noise"]["false_positives"] == 0.1
    for name in ("norfair", "bytetrack"):
        baseline = result["baselines"][name]
        assert SCORES <= set(baseline) and baseline["gt_tracks"] == result["gt_tracks"] and baseline["frames"] == 40
    norfair = result["baselines"]["norfair"]
    assert norfair["settings"] == {"distance_function": "iou", "distance_threshold": 0.7, "hit_counter_max": 15,
                                   "initialization_delay": 3}
    assert result["baselines"]["bytetrack"]["settings"]["track_buffer"] == 10  # one second at 10 fps
    assert result["targets"] == {"IDF1": pytest.approx(norfair["IDF1"] + 0.03, abs=1e-4),
                                 "id_switches": pytest.approx(0.8 * norfair["id_switches"], abs=0.01),
                                 "merged_ids": norfair["merged_ids"]}
    met = (result["IDF1"] >= result["targets"]["IDF1"] and result["id_switches"] <= result["targets"]["id_switches"]
           and result["merged_ids"] <= norfair["merged_ids"])
    assert result["meets_targets"] is met


def test_pipeline_with_a_model_is_scored(capsys, tmp_path):
    result = eval_tracking(capsys, "--videos", "1", "--frames", "12", "--size", "160x120", "--work-dir", str(tmp_path),
                           *TINY_MODEL)
    assert "RANDOM" in result["weights"]
    assert 0 <= result["HOTA"] <= 1 and 0 <= result["IDF1"] <= 1 and result["MOTA"] <= 1
    assert result["gt_tracks"] > 0 and result["frames"] == 12
    assert len((tmp_path / "clips" / "synthetic-0000.jsonl").read_text().splitlines()) == 12
    assert result["meets_targets"] is False  # random weights cannot track anything
    assert result["noise"] is None and set(result["baselines"]) == {"norfair", "bytetrack"}
    assert all(SCORES <= set(baseline) for baseline in result["baselines"].values())


def test_recorded_detections_hold_what_the_pipeline_got_and_the_low_scores_besides():
    from perception.detector import GroundingDinoDetector

    # The bundled model in a crowd of its own phrase: one confident box and several between 0.1 and 0.35.
    detector = GroundingDinoDetector.from_pretrained(None)
    frames, _ = generate_crowd_video(3, 2, (240, 320))
    detector.set_prompt("green circle .")
    recorder = RecordingDetector(detector, floor=0.1)
    direct, handed = detector.detect(frames, box_threshold=0.35), recorder.detect(frames, box_threshold=0.35)
    for expected, got, recorded in zip(direct, handed, recorder.recorded):
        np.testing.assert_array_equal(got.boxes, expected.boxes)
        np.testing.assert_array_equal(got.scores, expected.scores)
        assert got.labels == expected.labels and len(expected) > 0
        assert len(recorded) > len(expected) and recorded.scores.min() > 0.1


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
    assert main(["eval", "tracking", "--detections", "noisy-truth", "--miss-rate", "1.5"]) == 2
    assert "noise miss_rate must be in [0, 1); got 1.5" in capsys.readouterr().err
    assert main(["eval", "tracking", "--scenario", "crowd", "--jitter", "0.1", "--dropout-frames", "2"]) == 2
    assert "--jitter, --dropout-frames apply to --detections noisy-truth only" in capsys.readouterr().err
