"""A detector's output on the evaluation's videos: recorded while the pipeline runs, kept in a file, replayed.

`gdino eval tracking --record-detections FILE` writes what the detector found in every frame it ran on, down
to ByteTrack's low threshold; `--replay-detections FILE` runs the same videos through the same pipeline with
those detections in place of the model. Tracker settings, and the detector's box threshold down to that low
threshold, can then be compared on a model's real boxes in seconds instead of minutes, every variant on identical
input.

The file is JSON lines: a header (what the videos and the detector were), then one line per video holding
each frame's detections, null where the detector did not run. Floats are written as Python's repr of the
float32 values, so they come back bit for bit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.model.tokenizer import parse_prompt
from perception.postprocess import present_phrase_keep, present_phrase_score, select
from perception.types import Detections

FORMAT = "gdino-eval-tracking-detections"
VERSION = 2  # 2: the present-phrase rule's settings in the header
# What the videos were: a replay regenerates them from these and must match them exactly.
VIDEO_KEYS = ("scenario", "seed", "videos", "frames", "size", "frame_rate", "frame_stride")
HEADER_KEYS = (*VIDEO_KEYS, "box_threshold", "present_phrase_floor", "present_phrase_iou", "floor", "weights", "dtype")
# Written when there is one, read as None when absent (recordings made before it): [settings, file] of the tracker
# settings the weights carry (perception.weights.tuned_settings), which a replay uses as the live run did.
TUNED_TRACKING_KEY = "tuned_tracking"


class RecordingError(Exception):
    """A recording that cannot be read, or that does not fit the run replaying it. Not a ValueError on
    purpose: the pipeline takes those for one refused frame and goes on, and a replay that has lost its
    place must stop instead."""


def above(detections: Detections, threshold: float) -> Detections:
    """The detections scoring above threshold (strictly, as the postprocessing's box threshold)."""
    keep = np.flatnonzero(detections.scores > threshold)
    return Detections(detections.boxes[keep], detections.scores[keep], [detections.labels[k] for k in keep])


def present_phrase_rule(detector) -> tuple[float | None, float]:
    """(floor, iou) of the present-phrase rule of perception.postprocess that ``detector`` applies when called at or
    above its box threshold: the lowest score of a reported box whose phrase has a box above the threshold, and
    the overlap with a reported box of its phrase that drops it; floor None where no such rule applies (a
    detector without a postprocess config, such as noisy truth, or "tokens" labels)."""
    if isinstance(detector, ReplayedDetector):
        return detector.present_phrase
    postprocess = getattr(getattr(detector, "config", None), "postprocess", None)
    if postprocess is None:
        return None, 1.0
    return present_phrase_score(postprocess), postprocess.present_phrase_iou


def as_called(detections: Detections, asked: float, box_threshold: float, rule: tuple[float | None, float]
              ) -> Detections:
    """What a detector with box threshold ``box_threshold`` and present-phrase ``rule`` returns for a call at
    ``asked``, from what it found at a lower threshold (sorted by score): the boxes above ``asked``, and when the
    call is not lowered under its box threshold, the boxes of present phrases that the rule keeps."""
    floor, iou = rule
    if asked < box_threshold or floor is None or floor >= asked:
        return above(detections, asked)
    return select(detections, present_phrase_keep(detections, asked, floor, iou))


class RecordingDetector:
    """A FrameDetector for the pipeline that keeps what the wrapped detector found in each frame it ran on,
    down to `floor` (lower than the pipeline asks for, for ByteTrack), and hands the pipeline exactly the
    detections it asked for (the postprocessing keeps boxes in score order and suppresses only lower-scored
    ones, so a lower threshold adds boxes and changes none; at or above the detector's box threshold the
    present-phrase rule is applied again to what was found, :func:`as_called`)."""

    def __init__(self, detector, floor: float) -> None:
        self.detector, self.floor = detector, floor
        self.present_phrase = present_phrase_rule(detector)
        self.recorded: list[Detections] = []  # one per detected frame, in frame order
        self.lowest = floor  # the lowest threshold any call recorded down to

    @property
    def box_threshold(self) -> float:
        return self.detector.box_threshold

    @property
    def device(self):
        return getattr(self.detector, "device", "cpu")

    def set_prompt(self, prompt: str) -> list[str]:
        return self.detector.set_prompt(prompt)

    def detect(self, images: list[np.ndarray], box_threshold: float | None = None) -> list[Detections]:
        asked = self.detector.box_threshold if box_threshold is None else box_threshold
        self.lowest = min(self.lowest, asked)
        found = self.detector.detect(images, box_threshold=min(asked, self.floor))
        self.recorded.extend(found)
        return [as_called(detections, asked, self.detector.box_threshold, self.present_phrase) for detections in found]


@dataclass
class Recording:
    """header: the VIDEO_KEYS of the run, its box_threshold, the floor the detections reach down to, and the
    detector's weights and dtype; videos: per video name, each frame's detections (None where skipped)."""

    header: dict
    videos: dict[str, list[Detections | None]]

    def at_box_threshold(self, box_threshold: float) -> "Recording":
        """The same detections as a detector with box threshold ``box_threshold`` would have answered: the
        recording holds every box down to its floor and a replay applies the threshold (:func:`as_called`), so any
        threshold from the floor up is served exactly; RecordingError under the floor."""
        if not box_threshold >= self.header["floor"]:
            raise RecordingError(f"box threshold {box_threshold}: the recording holds detections down to "
                                 f"{self.header['floor']} only: record again with this threshold")
        return Recording({**self.header, "box_threshold": box_threshold}, self.videos)

    def check_fits(self, run: dict) -> None:
        """RecordingError unless `run` (VIDEO_KEYS) describes the videos this recording was made on."""
        differ = [f"{key} {run[key]!r} (recorded: {self.header[key]!r})" for key in VIDEO_KEYS
                  if _plain(run[key]) != self.header[key]]
        if differ:
            raise RecordingError("the recorded detections are of other videos: " + ", ".join(differ))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _frame_json(detections: Detections | None):
    if detections is None:
        return None
    return {"boxes": [[float(v) for v in box] for box in detections.boxes],
            "scores": [float(s) for s in detections.scores], "labels": list(detections.labels)}


def write_recording(path: Path, header: dict, videos: dict[str, list[Detections | None]]) -> None:
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise ValueError(f"a recording's header needs {', '.join(missing)}")
    with open(path, "w", encoding="utf-8") as out:
        optional = {TUNED_TRACKING_KEY: header[TUNED_TRACKING_KEY]} if header.get(TUNED_TRACKING_KEY) else {}
        out.write(json.dumps({"format": FORMAT, "version": VERSION,
                              **{key: _plain(header[key]) for key in HEADER_KEYS}, **optional}) + "\n")
        for name, frames in videos.items():
            out.write(json.dumps({"video": name, "frames": [_frame_json(d) for d in frames]}) + "\n")


def _frame(value, where: str) -> Detections | None:
    if value is None:
        return None
    try:
        return Detections(np.asarray(value["boxes"], np.float32).reshape(-1, 4), value["scores"],
                          [str(label) for label in value["labels"]])
    except (KeyError, TypeError, ValueError) as error:
        raise RecordingError(f"{where}: not a frame's detections ({error})") from None


def read_recording(path: Path) -> Recording:
    """The recording in `path`; RecordingError saying what is wrong with it otherwise."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise RecordingError(f"cannot read recorded detections {path}: {error}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise RecordingError(f"{path} line {number}: not JSON ({error.msg}); write recordings with gdino eval "
                                 "tracking --record-detections") from None
    header = rows[0] if rows and isinstance(rows[0], dict) else {}
    if header.get("format") != FORMAT:
        raise RecordingError(f"{path}: not a recording of gdino eval tracking --record-detections")
    if header.get("version") != VERSION:
        raise RecordingError(f"{path}: recording version {header.get('version')!r}; this gdino reads {VERSION}: "
                             "record again with gdino eval tracking --record-detections")
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise RecordingError(f"{path}: the header lacks {', '.join(missing)}")
    tuned = header.get(TUNED_TRACKING_KEY)
    if tuned is not None and not (isinstance(tuned, list) and len(tuned) == 2 and isinstance(tuned[0], dict)
                                  and isinstance(tuned[1], str)):
        raise RecordingError(f"{path}: the header's {TUNED_TRACKING_KEY} must be [settings, file]; got {tuned!r}")
    videos = {}
    for number, row in enumerate(rows[1:], start=2):
        where = f"{path} line {number}"
        if not (isinstance(row, dict) and isinstance(row.get("video"), str) and isinstance(row.get("frames"), list)):
            raise RecordingError(f"{where}: not a video's detections")
        if len(row["frames"]) != header["frames"]:
            raise RecordingError(f"{where}: {len(row['frames'])} frames; the header says {header['frames']}")
        videos[row["video"]] = [_frame(value, f"{where} frame {index}") for index, value in enumerate(row["frames"])]
    if len(videos) != header["videos"]:
        raise RecordingError(f"{path}: {len(videos)} videos; the header says {header['videos']} (a cut-off file?)")
    return Recording(header, videos)


class ReplayedDetector:
    """A FrameDetector that hands the pipeline one video's recorded detections, frame after frame, as the model
    would have answered the threshold each call asks for (:func:`as_called`, RecordingDetector's rule)."""

    def __init__(self, recording: Recording, video: str) -> None:
        if video not in recording.videos:
            raise RecordingError(f"the recording holds no video {video!r}")
        header = recording.header
        self.video, self.box_threshold, self.floor = video, header["box_threshold"], header["floor"]
        self.present_phrase = header["present_phrase_floor"], header["present_phrase_iou"]
        self.detections = [found for found in recording.videos[video] if found is not None]
        self.handed = 0

    def set_prompt(self, prompt: str) -> list[str]:
        return parse_prompt(prompt)[0]

    def detect(self, images: list[np.ndarray], box_threshold: float | None = None) -> list[Detections]:
        asked = self.box_threshold if box_threshold is None else box_threshold
        if asked < self.floor:
            raise RecordingError(f"the tracker asks for detections down to {asked}; the recording holds them down "
                                 f"to {self.floor} only: record again with these tracker settings")
        if self.handed + len(images) > len(self.detections):
            raise RecordingError(f"video {self.video}: the pipeline ran the detector on more frames than the "
                                 f"{len(self.detections)} recorded (another frame stride?)")
        found = self.detections[self.handed:self.handed + len(images)]
        self.handed += len(images)
        return [as_called(detections, asked, self.box_threshold, self.present_phrase) for detections in found]

    def check_done(self) -> None:
        if self.handed != len(self.detections):
            raise RecordingError(f"video {self.video}: the pipeline ran the detector on {self.handed} frames, "
                                 f"{len(self.detections)} were recorded")
