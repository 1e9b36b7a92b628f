"""`gdino bench node --json` end to end: a real node process fed at 30 Hz, with the tiny random model."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")


def test_bench_node_reports_latency_drops_backlog_overhead_and_memory():
    command = [sys.executable, "-m", "perception.cli.main", "bench", "node", "--json", "--frames", "75",
               "--size", "160x120", "--weights", "random:tiny", "--shortest-edge", "120", "--longest-edge", "160"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout)
    assert result["frames_published"] == 75
    # Every frame the node received is answered or counted as dropped (newest frame wins).
    assert result["frames_answered"] + result["dropped"] == result["received_by_node"] <= 75
    assert result["frames_answered"] >= 1  # how many depends on the model speed under the machine's load
    assert result["largest_backlog"] == 1  # one camera: never more than one frame waits
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["max"]
    assert result["model_ms"]["p50"] > 0 and math.isfinite(result["overhead"]) and result["overhead"] >= 0
    assert result["rss_mb"]["end"] > 100 and result["rss_mb"]["every_10s"]
    # The memory baseline needs 50 answered frames; a slow machine may not get there in 75 frames.
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
        "model:=m", "device:=cpu", "dtype:=float32", "batch_size:=2", "box_threshold:=0.4", "text_threshold:=0.3",
        "nms_iou:=0.6", "shortest_edge:=120", "longest_edge:=160"])
    # No --weights: no model parameter at all (an empty "model:=" is not a valid ROS override).
    assert not [p for p in node_parameters(parser.parse_args([])) if p.startswith("model:=")]
