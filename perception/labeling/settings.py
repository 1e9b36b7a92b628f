"""The settings of a `gdino label` run, and the hash that says whether an earlier run used the same ones."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from perception.camera_messages import DEFAULT_MAX_PIXELS
from perception.tracking.config import TrackerConfig


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class LabelSettings:
    """What decides a run's outputs (hashed), and how fast it gets there (not hashed: ``batch_size``)."""

    prompt: str
    # The model options as given (weights, preset, thresholds, sizes, dtype): part of the hash only; the
    # detector itself is built on each worker by the pool's factory.
    model: dict = field(default_factory=dict)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    every: int = 1  # keep every n-th frame of a video or camera in the dataset (counted from its first)
    # Keep instead the first frame of every period of this many seconds (frame time // every_seconds changes).
    every_seconds: float | None = None
    # Videos longer than this are split into chunks of this length for several workers; 0: never split.
    chunk_seconds: float = 600.0
    # Each chunk after the first starts this much earlier: its tracker warms up on frames the previous
    # chunk owns, and the tracks seen in both are joined into one id. At least the tracker's
    # confirmation delay (a few frames); 2 s at 10-30 frames/s is ample.
    chunk_overlap: float = 2.0
    annotate: bool = False  # also write each video's annotated MP4 (and each bag's annotated images)
    jpeg: bool = False  # write the dataset's kept frames as JPEG files
    yolo: bool = False  # write YOLO label files beside the JPEG files (needs jpeg)
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images (bags, image folders) are refused unread
    batch_size: int = 4  # frames per model call; changes speed, not results (within float rounding)

    def __post_init__(self) -> None:
        _check(self.every >= 1, f"--every must be >= 1 frame; got {self.every}")
        _check(self.every_seconds is None or (math.isfinite(self.every_seconds) and self.every_seconds > 0),
               f"--every-seconds must be > 0; got {self.every_seconds}")
        _check(self.chunk_seconds == 0 or self.chunk_seconds > self.chunk_overlap >= 0,
               f"--chunk-seconds must be 0 (never split) or longer than --chunk-overlap ({self.chunk_overlap} s); "
               f"got {self.chunk_seconds}")
        _check(self.chunk_overlap >= 0, f"--chunk-overlap must be >= 0 seconds; got {self.chunk_overlap}")
        _check(not self.yolo or self.jpeg, "--yolo writes labels beside the JPEG frames: add --jpeg")
        _check(self.max_pixels >= 1, f"--max-pixels must be >= 1; got {self.max_pixels}")
        _check(1 <= self.batch_size <= 256, f"--batch-size must be in [1, 256]; got {self.batch_size}")

    def as_dict(self) -> dict:
        """Every setting that decides the outputs, JSON-ready (what summary.json shows and the hash covers)."""
        values = dataclasses.asdict(self)
        del values["batch_size"]
        return values

    def digest(self) -> str:
        """A short hash of :meth:`as_dict`: equal settings, equal hash, on any machine."""
        text = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
