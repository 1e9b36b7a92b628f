"""`gdino bench node --json` end to end: a real node process fed by two cameras at 30 Hz, with the tiny random
model, and the driver's pure parts."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")


def test_bench_node_reports_cameras_batching_prompt_changes_latency_drops_and_memory():
    command = [sys.executable, "-m", "perception.cli.main", "bench", "node", "--json", "--frames", "40", "--cameras", "2",
               "--prompt-changes", "2", "--size", "160x120", "--weights", "random:tiny",
               "--shortest-edge", "120", "--longest-edge", "160"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout)
    cameras = ["/bench/cam0/image_raw", "/bench/cam1/image_raw"]
    phases = result["phases"]
    assert list(phases) == ["one_camera", "all_cameras", "prompt_changes"]
    assert list(phases["one_camera"]["per_camera"]) == cameras[:1] and list(result["per_camera"]) == cameras
    # How many frames are answered depends on the model speed under the machine's load; some must be.
    for camera in cameras:
        figures = result["per_camera"][camera]
        assert figures["published"] == 40 and figures["answered"] >= 1 and figures["answered_hz"] >= 0
    assert phases["prompt_changes"]["per_camera"][cameras[1]]["answered"] >= 2  # at least one per change
    assert result["batching_gain"] == pytest.approx(
        phases["all_cameras"]["answered_hz"] / phases["one_camera"]["answered_hz"], rel=1e-3)
    change = result["prompt_change_ms"]
    assert change["changes"] == 2 and len(change["prompts"]) == 2
    assert change["text_encoder_calls"] == 2  # every change encoded its text: none came from the cache
    assert 0 < change["p50"] <= change["p95"] <= change["max"] and change["to_phrases_ms"]["p50"] > 0
    assert change["model_batch_ms"] > 0 and 1 <= change["frames_per_batch"] <= 2 and change["text_encoding_ms"] > 0
    # The goal's batch time is the steady phase's (same cameras, no changes); restarts are counted apart.
    assert change["model_batch_ms"] == phases["all_cameras"]["model_batch_ms"]
    assert change["changes_model_batch_ms"] == phases["prompt_changes"]["model_batch_ms"] > 0
    assert 0 <= change["text_side_restarts"] <= change["changes"]  # one at most per change: they come one by one
    assert change["goal_ms"] == pytest.approx(
        change["model_batch_ms"] + change["text_encoding_ms"] + change["frame_interval_ms"], abs=0.02)
    assert change["frame_interval_ms"] == pytest.approx(1e3 / 30, abs=0.01)
    published = 40 + 2 * 40 + 2 * phases["prompt_changes"]["frames_per_camera"]
    assert result["frames_published"] == published
    # Every frame the node received is answered or counted as dropped (newest frame wins).
    assert result["frames_answered"] + result["dropped"] == result["received_by_node"] <= published
    assert 1 <= result["largest_backlog"] <= 2  # newest wins: at most one frame per camera waits
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["max"]
    assert result["model_ms"]["p50"] > 0 and math.isfinite(result["overhead"]) and result["overhead"] >= 0
    assert result["rss_mb"]["end"] > 100 and result["rss_mb"]["every_10s"]
    # The memory baseline needs 50 answered frames; a slow machine may not get there in 40 frames.
    assert (result["rss_growth"] is None) == (result["memory_baseline_frame"] is None)
    assert result["node_exit_code"] == 0 and result["leftover_shm_files"] == []


def test_bench_node_rejects_a_bad_size():
    completed = subprocess.run([sys.executable, "-m", "perception.cli.main", "bench", "node", "--size", "big"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "--size must look like 640x480" in completed.stderr


def test_memory_growth_compares_medians_of_readings_after_the_baseline():
    from nodes.bench_driver import rss_growth

    readings = [(0, 500), (10, 1000), (20, 1030), (30, 990), (40, 1100), (50, 1090), (60, 1110)]
    assert rss_growth(1000, 10, readings, 1100) == pytest.approx(0.1, abs=1e-3)  # 1000 -> 1100
    assert rss_growth(1000, 10, readings[:3], 1040) == pytest.approx(0.04)  # too few: the two readings
    assert rss_growth(None, None, readings, 1100) is None


def test_every_detector_option_becomes_a_node_parameter():
    import argparse

    from perception.cli.bench_node import node_parameters
    from perception.cli.model_args import add_detector_arguments

    parser = argparse.ArgumentParser()
    add_detector_arguments(parser)
    args = parser.parse_args(["--weights", "m", "--box-threshold", "0.4", "--text-threshold", "0.3", "--nms-iou", "0.6",
                              "--shortest-edge", "120", "--longest-edge", "160", "--batch-size", "2"])
    assert sorted(node_parameters(args)) == sorted([
        "model:=m", "device:=cpu", f"dtype:={parser.get_default('dtype')}", "batch_size:=2", "box_threshold:=0.4", "text_threshold:=0.3",
        "nms_iou:=0.6", "shortest_edge:=120", "longest_edge:=160"])
    # No --weights: no model parameter at all (an empty "model:=" is not a valid ROS override).
    assert not [p for p in node_parameters(parser.parse_args([])) if p.startswith("model:=")]


def test_the_first_array_after_a_prompt_change_is_the_earliest_published_once_every_camera_has_one():
    from nodes.bench_driver import first_array_after

    # (camera, DDS source time, received time); the phrases were published at source time 100.
    arrays = [(0, 90, 95), (1, 99, 130), (1, 120, 131), (0, 101, 140)]
    assert first_array_after(arrays[:3], 100, 2) is None  # camera 0 has no new array yet
    # Camera 1's array arrived first, but camera 0's was published first (source 101 < 120): that one
    # counts; camera 1's array at 99 was computed before the change although it arrived after others.
    assert first_array_after(arrays, 100, 2) == (101, 140)


def test_changed_prompts_all_need_a_text_encoding():
    from nodes.bench_driver import change_prompts
    from perception.detector import DetectorConfig

    # No prompt comes back while the detector still keeps its text features.
    window = DetectorConfig().prompt_cache_size + 1
    prompts = change_prompts(60)
    assert all(len(set(prompts[i : i + window])) == window for i in range(len(prompts) - window + 1))
