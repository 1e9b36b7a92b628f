"""`gdino video` end to end, in-process through gdino's main(): the real recorded clip, damaged and
unreadable inputs, options, with the tiny random-weight model at a small input size (plumbing only;
detections are meaningless). Signals, exit codes of the installed command and hostile files are in
tests/test_video_hostile.py."""
from __future__ import annotations

import pytest
from video_samples import (VTEST_FRAMES, container_duration, damaged_copy, decoded_times, read_jsonl, synthetic_clip,
                           vtest_path)

from perception.cli.main import main

TINY_MODEL = ["--weights", "random:tiny", "--shortest-edge", "64", "--longest-edge", "96", "--quiet"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gdino video: error:")]


def test_real_recording_every_frame_accounted_for(tmp_path, capsys):
    video, jsonl, mot = tmp_path / "vtest.mp4", tmp_path / "vtest.jsonl", tmp_path / "vtest.mot"
    # Stride 15 (the tracker's hit counter) keeps the model to 53 of the 795 frames; all 795 are written.
    assert main(["video", str(vtest_path()), "--prompt", "a person .", "--stride", "15", "--output-size", "384x288",
                 "--output", str(video), "--jsonl", str(jsonl), "--mot", str(mot), *TINY_MODEL]) == 0
    assert f"{VTEST_FRAMES} frames (53 detected)" in capsys.readouterr().out
    records = read_jsonl(jsonl)
    assert [record["frame"] for record in records] == list(range(VTEST_FRAMES))
    assert [record["time"] for record in records] == pytest.approx([index / 10 for index in range(VTEST_FRAMES)])
    assert sum(record["detected"] for record in records) == 53
    assert decoded_times(video) == pytest.approx([index / 10 for index in range(VTEST_FRAMES)], abs=1e-3)
    assert container_duration(video) == pytest.approx(container_duration(vtest_path()), abs=1e-3)
    mot_rows = mot.read_text().splitlines()
    assert len(mot_rows) == sum(len(record["tracks"]) for record in records) > 0


def test_truncated_input_exit_code_and_report(tmp_path, caplog):
    clip = tmp_path / "clip.mkv"
    synthetic_clip(clip, 30, container_format="matroska")
    truncated = damaged_copy(clip, tmp_path / "truncated.mkv", keep=2 / 3)
    decodable = len(decoded_times(truncated))
    assert main(["video", str(truncated), "--prompt", "red heart .", "--output", str(tmp_path / "out.mp4"),
                 *TINY_MODEL]) == 3
    assert f"{30 - decodable} of 30 frames announced by the header missing" in caplog.text
    assert len(read_jsonl(tmp_path / "out.jsonl")) == len(decoded_times(tmp_path / "out.mp4")) == decodable


def test_unusable_inputs_each_give_one_error_line(tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    synthetic_clip(clip, 3, codec="mpeg4", container_format="avi")
    unknown_codec = tmp_path / "unknown.avi"
    unknown_codec.write_bytes(clip.read_bytes().replace(b"FMP4", b"QQQQ"))
    cases = [
        ([str(tmp_path / "missing.mp4"), "--prompt", "a person ."], "missing.mp4: no such file"),
        ([str(unknown_codec), "--prompt", "a person ."], "unknown video codec"),
        ([str(clip), "--prompt", " . "], "names nothing"),
        ([str(clip), "--prompt", "a person .", "--start", "100"], "lies between 100.0 s and the end"),
        ([str(clip), "--prompt", "a person .", "--nms-iou", "1.5"], "nms_iou must be in (0, 1]"),
        ([str(clip), "--prompt", "a person .", "--present-phrase-iou", "0"], "present_phrase_iou must be in (0, 1]"),
    ]
    for args, message in cases:
        assert main(["video", *args, "--output", str(tmp_path / "out.mp4"), *TINY_MODEL]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out.mp4").exists()


def test_nms_option_reaches_the_detector():
    import argparse

    from perception.cli.model_args import add_detector_arguments, build_detector

    parser = argparse.ArgumentParser()
    add_detector_arguments(parser)
    detector = build_detector(parser.parse_args(["--weights", "random:tiny", "--nms-iou", "0.6"]))
    assert detector.config.postprocess.nms_iou == 0.6
    assert build_detector(parser.parse_args(["--weights", "random:tiny"])).config.postprocess.nms_iou is None


def test_present_phrase_options_reach_the_detector():
    import argparse

    from perception.cli.model_args import add_detector_arguments, build_detector

    parser = argparse.ArgumentParser()
    add_detector_arguments(parser)
    given = build_detector(parser.parse_args(["--weights", "random:tiny", "--present-phrase-threshold", "0.3",
                                              "--present-phrase-iou", "0.7"])).config.postprocess
    assert (given.present_phrase_threshold, given.present_phrase_iou) == (0.3, 0.7)
    default = build_detector(parser.parse_args(["--weights", "random:tiny"])).config.postprocess
    assert (default.present_phrase_threshold, default.present_phrase_iou) == (0.25, 0.5)


def test_tracker_options_reach_the_tracker_config_over_the_yaml_file(tmp_path):
    from perception.cli.errors import CliError
    from perception.cli.main import build_parser
    from perception.cli.video import tracker_config_from_args

    settings = tmp_path / "tracking.yaml"
    settings.write_text("hit_counter_max: 9\nreid_seconds: 5\nmotion: {model: translation}\n")
    args = build_parser().parse_args([
        "video", "in.mp4", "--prompt", "a person .", "--tracker-config", str(settings), "--reid-seconds", "1.5",
        "--reid-appearance", "0.6", "--label-gating", "prompt", "--continue-threshold", "0.2",
        "--cross-phrase-iou", "0.9", "--camera-motion"])
    config = tracker_config_from_args(args)
    assert (config.hit_counter_max, config.reid_seconds, config.reid_appearance) == (9, 1.5, 0.6)
    assert (config.label_gating, config.continue_threshold, config.cross_phrase_iou) == ("prompt", 0.2, 0.9)
    assert config.motion.enabled and config.motion.model == "translation"
    args = build_parser().parse_args(["video", "in.mp4", "--prompt", "a .", "--reid-appearance", "1.5"])
    with pytest.raises(CliError, match=r"reid_appearance must be in \[0, 1\)"):
        tracker_config_from_args(args)


def test_the_weights_tuned_settings_apply_where_no_option_is_given(tmp_path, caplog):
    """bundled:crowds carries box_threshold 0.4 and two tracker settings (its tuned_settings.yaml): they apply and
    are logged where the user gives none; an option replaces its one setting, --tracker-config all the tracker's."""
    import logging

    from perception.cli.main import build_parser
    from perception.cli.model_args import build_detector
    from perception.cli.video import tracker_config_from_args

    def parsed(*options):
        return build_parser().parse_args(["video", "in.mp4", "--prompt", "a person .", "--weights", "bundled:crowds",
                                          "--dtype", "float32", *options])

    with caplog.at_level(logging.INFO):
        detector, tracker = build_detector(parsed()), tracker_config_from_args(parsed())
    assert detector.box_threshold == 0.4 and detector.config.postprocess.text_threshold == 0.25
    assert (tracker.duplicate_iou, tracker.kalman_process_noise) == (0.5, 0.003)
    assert "box_threshold 0.4" in caplog.text and "duplicate_iou 0.5, kalman_process_noise 0.003" in caplog.text
    assert build_detector(parsed("--box-threshold", "0.3")).box_threshold == 0.3
    assert tracker_config_from_args(parsed("--continue-threshold", "0.1")).duplicate_iou == 0.5
    settings = tmp_path / "tracking.yaml"
    settings.write_text("hit_counter_max: 9\n")
    replaced = tracker_config_from_args(parsed("--tracker-config", str(settings)))
    assert (replaced.hit_counter_max, replaced.duplicate_iou, replaced.kalman_process_noise) == (9, 0.7, 0.1)
    bundled = build_parser().parse_args(["video", "in.mp4", "--prompt", "a .", "--weights", "bundled", "--dtype",
                                         "float32"])
    assert build_detector(bundled).box_threshold == 0.35 and tracker_config_from_args(bundled).duplicate_iou == 0.7


def test_a_wrong_tracking_section_in_tuned_settings_is_refused_naming_the_file(tmp_path):
    """The tracking section is checked where a tracker is built (detection alone runs without norfair)."""
    from perception.cli.errors import CliError
    from perception.cli.main import build_parser
    from perception.cli.video import tracker_config_from_args
    from perception.weights import TUNED_SETTINGS_FILE

    (tmp_path / TUNED_SETTINGS_FILE).write_text("tracking: {duplicate_iuo: 0.5}\n")
    args = build_parser().parse_args(["video", "in.mp4", "--prompt", "a .", "--weights", str(tmp_path)])
    with pytest.raises(CliError, match=r"tuned_settings.yaml: unknown tracking keys \['duplicate_iuo'\]"):
        tracker_config_from_args(args)
