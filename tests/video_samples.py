"""Video files and a detector for the video and tracking tests: generated clips written with PyAV, the
real recorded clip from Debian's opencv-doc, and the tiny random-weight detector at a small input size."""
from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from perception.detector import DetectorConfig, GroundingDinoDetector
from perception.model.config import tiny_model_config
from perception.preprocess import PreprocessConfig
from perception.training.synthetic import TrackedObject, generate_video

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_FRAMES = 795


def vtest_path() -> Path:
    """The real recorded clip; missing it fails in CI (CI=true) and skips elsewhere, both saying how to fix it."""
    if not VTEST.is_file():
        message = f"{VTEST} is missing: install it with `apt-get update && apt-get install -y opencv-doc`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return VTEST


def tiny_detector() -> GroundingDinoDetector:
    """Random tiny weights at a 64-pixel input: plumbing only, its detections are meaningless."""
    config = DetectorConfig(preprocess=PreprocessConfig(shortest_edge=64, longest_edge=96))
    return GroundingDinoDetector.from_model_config(tiny_model_config(), config=config)


def write_video(path: Path, frames: list[np.ndarray], frame_rate: Fraction = Fraction(10), codec: str = "libx264",
                container_format: str | None = None, pix_fmt: str = "yuv420p") -> None:
    """Encode RGB frames at a constant rate, pts 0, 1, 2, ... in 1/frame_rate units."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=frame_rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, 1 / frame_rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def synthetic_clip(path: Path, num_frames: int, seed: int = 0, size: tuple[int, int] = (120, 160),
                   frame_rate: Fraction = Fraction(10), codec: str = "libx264",
                   container_format: str | None = None) -> list[list[TrackedObject]]:
    """Write a generated video to path; returns its ground-truth objects per frame."""
    frames, tracks = generate_video(seed, num_frames, size)
    write_video(path, frames, frame_rate, codec, container_format)
    return tracks


def damaged_copy(source: Path, target: Path, keep: float = 1.0, noise_bytes: int = 0) -> Path:
    """A copy of source cut to its first `keep` fraction of bytes, with `noise_bytes` random bytes (seed 0)
    written over its middle."""
    data = bytearray(source.read_bytes()[: int(source.stat().st_size * keep)])
    middle = len(data) // 2
    data[middle:middle + noise_bytes] = np.random.default_rng(0).integers(0, 256, noise_bytes, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def decoded_times(path: Path, until_damage: bool = False) -> list[float]:
    """Presentation time in seconds of every frame PyAV decodes from the file; with ``until_damage``, of those
    before the first undecodable data, as a player plays a file cut mid-write."""
    times: list[float] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                times.append(float(frame.pts * stream.time_base))
        except av.error.FFmpegError:
            if not until_damage:
                raise
    return times


def container_duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return container.duration / av.time_base


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
