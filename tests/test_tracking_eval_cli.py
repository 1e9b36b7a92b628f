"""`gdino eval tracking --json`: one JSON object with TrackEval's scores for our tracker and its baselines, on
noisy truth and for the whole pipeline with a model, in every scenario."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception.cli.main import main
from perception.tracking.recorded import RecordingDetector
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
                           "--frames", "40", "--dropout-frames", "4", "--false-positives", "0.1",
                           "--second-boxes", "0.3")
    assert SCORES <= set(result) and result["scenario"] == "crowd" and result["videos"] == 1
    assert result["noise"]["dropout_frames"] == 4 and result["noise"]["false_positives"] == 0.1
    assert result["noise"]["second_boxes"] == 0.3
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


RECORDED_RUN = ["--videos", "2", "--frames", "30", "--seed", "10000", "--stride", "2", "--dtype", "float32"]
COMPARED = ("HOTA", "IDF1", "MOTA", "id_switches", "merged_ids", "fragmentations", "gt_tracks")


def same_scores(one: dict, other: dict) -> None:
    assert {key: one[key] for key in COMPARED} == {key: other[key] for key in COMPARED}
    for name in ("norfair", "bytetrack"):
        assert ({key: one["baselines"][name][key] for key in COMPARED}
                == {key: other["baselines"][name][key] for key in COMPARED}), name


def test_replayed_detections_score_as_the_model_did_with_any_tracker_settings_and_box_threshold(capsys, tmp_path):
    recording = tmp_path / "detections.jsonl"
    recorded = eval_tracking(capsys, *RECORDED_RUN, "--record-detections", str(recording))
    assert recorded["recorded_detections"] == str(recording) and recorded["id_switches"] + recorded["gt_tracks"] > 0
    replayed = eval_tracking(capsys, "--replay-detections", str(recording))
    same_scores(replayed, recorded)
    assert replayed["seed"] == 10000 and replayed["videos"] == 2 and replayed["frames_per_video"] == 30
    assert replayed["weights"].endswith(f"(replayed from {recording})") and replayed["dtype"] == "float32"
    # Other tracker settings on the replay score as the model run with them: the point of recording.
    changed = ["--reid-seconds", "0", "--continue-threshold", "0.3", "--camera-motion"]
    with_model = eval_tracking(capsys, *RECORDED_RUN, *changed)
    replayed = eval_tracking(capsys, "--replay-detections", str(recording), "--seed", "10000", *changed)
    same_scores(replayed, with_model)
    assert with_model["IDF1"] != recorded["IDF1"] or with_model["id_switches"] != recorded["id_switches"]
    # Without weak boxes the tracker asks at the box threshold, where the detector also reports the unsure boxes of
    # a phrase that is there (present_phrase_threshold): the replay must hand those over too.
    with_model = eval_tracking(capsys, *RECORDED_RUN, "--continue-threshold", "0")
    replayed = eval_tracking(capsys, "--replay-detections", str(recording), "--continue-threshold", "0")
    same_scores(replayed, with_model)
    # A higher box threshold: the recording holds every box down to its floor, so the replay answers as the model
    # asked for 0.6 does (fewer boxes above it, and the present-phrase rule under it drops more of those left).
    with_model = eval_tracking(capsys, *RECORDED_RUN, "--box-threshold", "0.6")
    replayed = eval_tracking(capsys, "--replay-detections", str(recording), "--box-threshold", "0.6")
    same_scores(replayed, with_model)
    # 0.4: the default weights' tuned threshold
    assert replayed["box_threshold"] == with_model["box_threshold"] == 0.6 and recorded["box_threshold"] == 0.4
    assert with_model["IDF1"] != recorded["IDF1"] or with_model["MOTA"] != recorded["MOTA"]
    # So is the coverage of the ground truth by visibility; a box above the threshold is one the detector found.
    assert replayed["coverage_by_visibility"] == with_model["coverage_by_visibility"]
    bands = [band for band in with_model["coverage_by_visibility"].values() if band["objects"]]
    assert bands and all(band["detected"] <= band["found"] for band in bands)
    assert recorded["coverage_by_visibility"] != with_model["coverage_by_visibility"]
    # --oracle corrects the recording against the videos' ground truth before the replay: the same objects found in
    # the same frames, each by one exactly drawn box, track at least as well as the model's own boxes.
    truth = eval_tracking(capsys, "--replay-detections", str(recording), "--oracle", "truth")
    assert truth["oracle"] == "truth" and recorded["oracle"] is None and truth["IDF1"] >= recorded["IDF1"]
    assert truth["coverage_by_visibility"] != recorded["coverage_by_visibility"]


def test_a_recording_that_does_not_fit_is_a_one_line_error(capsys, tmp_path):
    recording = tmp_path / "detections.jsonl"
    eval_tracking(capsys, "--videos", "1", "--frames", "6", "--size", "160x120", "--record-detections", str(recording),
                  *TINY_MODEL)
    lines = recording.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["floor"] == 0.1 and header["size"] == [120, 160] and len(lines) == 2
    assert header["present_phrase_floor"] == 0.25 and header["present_phrase_iou"] == 0.5

    def refused(*args: str) -> str:
        assert main(["eval", "tracking", "--replay-detections", str(recording), *args]) == 2
        return capsys.readouterr().err

    assert f"--seed 3: {recording} was recorded with 0" in refused("--seed", "3")
    assert main(["eval", "tracking", "--oracle", "truth"]) == 2
    assert "--oracle corrects recorded detections: give --replay-detections FILE" in capsys.readouterr().err
    assert "--weights, --dtype: the detections come from" in refused("--weights", "random:tiny", "--dtype", "float32")
    # A tracker or a box threshold asking below what was recorded would silently lose boxes.
    assert "recording holds them down to 0.1 only" in refused("--continue-threshold", "0.05")
    assert "box threshold 0.05: the recording holds detections down to 0.1 only" in refused("--box-threshold", "0.05")
    (tmp_path / "cut.jsonl").write_text(lines[0] + "\n")
    assert main(["eval", "tracking", "--replay-detections", str(tmp_path / "cut.jsonl")]) == 2
    assert "0 videos; the header says 1 (a cut-off file?)" in capsys.readouterr().err
    # Version 1 recordings lack the present-phrase rule's settings: a replay could not answer as the model did.
    (tmp_path / "v1.jsonl").write_text(json.dumps({**header, "version": 1}) + "\n" + lines[1] + "\n")
    assert main(["eval", "tracking", "--replay-detections", str(tmp_path / "v1.jsonl")]) == 2
    assert "recording version 1; this gdino reads 2" in capsys.readouterr().err
    (tmp_path / "torn.jsonl").write_text(lines[0] + "\n" + lines[1][:40] + "\n")
    assert main(["eval", "tracking", "--replay-detections", str(tmp_path / "torn.jsonl")]) == 2
    assert "line 2: not JSON" in capsys.readouterr().err
    assert main(["eval", "tracking", "--replay-detections", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read recorded detections" in capsys.readouterr().err
    assert main(["eval", "tracking", "--detections", "noisy-truth", "--record-detections", str(recording)]) == 2
    assert "--record-detections records a model's detections" in capsys.readouterr().err
    assert main(["eval", "tracking", "--record-detections", str(tmp_path / "missing" / "d.jsonl"), *TINY_MODEL]) == 2
    assert "not a file in an existing folder" in capsys.readouterr().err


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
    # measured 0.923 with the default bundled:crowds and its settings (bfloat16); bundled 0.918, its first stage 0.924
    assert bundled_on_24_videos["IDF1"] >= 0.90, bundled_on_24_videos


@pytest.mark.slow
def test_bundled_model_meets_the_identity_switch_target_on_24_videos(bundled_on_24_videos):
    # measured 2 switches with the default bundled:crowds (0.43 per 20 tracks; bundled and its first stage also 2);
    # the first stage made 0 to 1.28 on six other sets of 24 videos, 0.57 pooled (README)
    assert bundled_on_24_videos["id_switches_per_20_gt_tracks"] <= 1.0, bundled_on_24_videos


def test_bad_settings_are_one_line_errors(capsys):
    assert main(["eval", "tracking", "--json", "--detections", "noisy-truth", "--size", "321x240"]) == 2
    assert "eval size must be even numbers >= 64" in capsys.readouterr().err
    assert main(["eval", "tracking", "--detections", "noisy-truth", "--miss-rate", "1.5"]) == 2
    assert "noise miss_rate must be in [0, 1); got 1.5" in capsys.readouterr().err
    assert main(["eval", "tracking", "--scenario", "crowd", "--jitter", "0.1", "--dropout-frames", "2"]) == 2
    assert "--jitter, --dropout-frames: for --detections noisy-truth only" in capsys.readouterr().err


def test_a_replay_tracks_with_the_settings_the_recorded_weights_carry(capsys, caplog, tmp_path):
    """bundled:crowds carries a box threshold and tracker settings (its tuned_settings.yaml); the live run uses them,
    the recording keeps the tracker's, and a replay uses them again, so it scores as the live run did."""
    import logging

    recording = tmp_path / "crowd.jsonl"
    run = ("--scenario", "crowd", "--videos", "1", "--frames", "8", "--size", "160x120")
    live = eval_tracking(capsys, *run, "--weights", "bundled:crowds", "--dtype", "float32",
                         "--record-detections", str(recording))
    header = json.loads(recording.read_text().splitlines()[0])
    assert live["box_threshold"] == header["box_threshold"] == 0.4
    assert header["tuned_tracking"][0] == {"duplicate_iou": 0.5, "kalman_process_noise": 0.003,
                                           "kalman_carry": False, "cross_phrase_iou": 0.7,
                                           "crowd_measurement_noise": 16}
    with caplog.at_level(logging.INFO):
        replayed = eval_tracking(capsys, "--replay-detections", str(recording))
    same_scores(replayed, live)
    assert "tracking with the settings tuned for these weights" in caplog.text
    assert header["tuned_tracking"][1] in caplog.text
    broken = tmp_path / "broken.jsonl"
    lines = recording.read_text().splitlines()
    broken.write_text(json.dumps({**header, "tuned_tracking": {"duplicate_iou": 0.5}}) + "\n" + lines[1] + "\n")
    assert main(["eval", "tracking", "--replay-detections", str(broken)]) == 2
    assert "the header's tuned_tracking must be [settings, file]" in capsys.readouterr().err


def test_noisy_truth_is_tracked_at_the_tracker_defaults_whatever_the_default_weights_carry(capsys, caplog, tmp_path):
    """No model runs on noisy truth, so no model's tuned settings apply: the default weights (bundled:crowds) carry
    tracker settings, and the crowd targets are for the tracker's own defaults. Same scores as an empty
    --tracker-config (TrackerConfig()), and nothing tuned in the log."""
    import logging

    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("{}\n")
    run = ("--scenario", "crowd", "--detections", "noisy-truth", "--videos", "1", "--frames", "40")
    real = ("--scenario", "trajectories", "--detections", "noisy-truth", "--videos", "1")
    with caplog.at_level(logging.INFO):
        plain = eval_tracking(capsys, *run)
        trajectories = eval_tracking(capsys, *real)
    assert "tuned for these weights" not in caplog.text
    same_scores(plain, eval_tracking(capsys, *run, "--tracker-config", str(defaults)))
    same_scores(trajectories, eval_tracking(capsys, *real, "--tracker-config", str(defaults)))


def test_a_recording_replays_at_the_detectors_pace_as_the_node_tracks_those_frames(capsys, tmp_path):
    """--detector-pace with --replay-detections: the frames a detector at that pace takes (the draw noisy truth makes
    for the video's seed), our tracker fed the recorded boxes of those frames as the node feeds it (perception.streams,
    at the tracker's floor), scored on those frames by the tracks it matched, as the node publishes them."""
    from perception.streams import MultiStreamDetector
    from perception.tracking.config import TrackerConfig
    from perception.tracking.evaluation import scenario_video
    from perception.tracking.pace import DetectorPace
    from perception.tracking.recorded import Recording, ReplayedDetector, read_recording
    from perception.training.prompts import build_prompt

    recording, work = tmp_path / "detections.jsonl", tmp_path / "work"
    eval_tracking(capsys, "--videos", "1", "--frames", "40", "--seed", "10000", "--dtype", "float32",
                  "--record-detections", str(recording))
    paced = eval_tracking(capsys, "--replay-detections", str(recording), "--detector-pace", "1-4",
                          "--work-dir", str(work))
    taken = DetectorPace(1, 4).taken(40, np.random.default_rng(10000))
    assert paced["detector_pace"] == [1, 4] and paced["frames"] == len(taken) < 30
    assert SCORES <= set(paced) and paced["coverage_by_visibility"]
    assert all(baseline["frames"] == len(taken) for baseline in paced["baselines"].values())

    kept = read_recording(recording)
    name = "synthetic-10000"
    node = MultiStreamDetector(ReplayedDetector(Recording(kept.header, {name: [kept.videos[name][i] for i in taken]}),
                                                name), TrackerConfig.from_dict(dict(kept.header["tuned_tracking"][0])))
    frames, objects = scenario_video("default", 10000, 40, (240, 320))
    node.set_prompt(build_prompt(sorted({item.phrase for scene in objects for item in scene})).text)
    published = set()
    for row, index in enumerate(taken, start=1):
        for box in node.process([("camera", frames[index])], [index / 10]).objects[0]:
            x0, y0, x1, y1 = (float(value) for value in box.box_xyxy)
            published.add(f"{row},{box.object_id},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f}")
    scored = {",".join(line.split(",")[:6])
              for line in (work / "trackers" / "gdino" / f"{name}.txt").read_text().splitlines()}
    assert published and scored == published

    # A recording made at a stride cannot say what a detector at a pace would have seen between its frames.
    strided = tmp_path / "strided.jsonl"
    eval_tracking(capsys, "--videos", "1", "--frames", "12", "--stride", "2", "--dtype", "float32",
                  "--record-detections", str(strided))
    assert main(["eval", "tracking", "--replay-detections", str(strided), "--detector-pace", "1-4"]) == 2
    assert "was recorded at stride 2; record at stride 1 to replay at a pace" in capsys.readouterr().err
    assert main(["eval", "tracking", "--detector-pace", "1-4", "--videos", "1", *TINY_MODEL]) == 2
    assert "--detector-pace: for --detections noisy-truth or --replay-detections only" in capsys.readouterr().err
