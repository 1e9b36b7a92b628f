"""What a worker does with one input, in a temporary folder the driver renames once it is complete.

- a video: what `gdino video` writes (perception.video.job.process_video): ``tracks.jsonl``,
  ``tracks.mot.txt`` and, with ``annotate``, ``annotated.mp4``; a chunk writes the same for its time range;
- a bag: what `gdino bag` writes (perception.bags.job.process_bag): the ``detections`` bag, plus
  ``tracks.jsonl``, one line per frame: ``{"camera", "frame", "timestamp" (bag ns), "time" (stamp s), "tracks"}``;
- an image folder: ``detections.jsonl``, one line per image: ``{"frame", "file", "width", "height", "tracks"}``
  (or ``"error"`` for an image that could not be used); images are not tracked (ids are null).

Then the input's dataset fragment (perception.labeling.dataset), its JPEG frames and YOLO labels.
Problems of the input (unreadable, no camera topic) raise :class:`InputFailed`; damage is counted.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.labeling.dataset import FrameSampler, frame_entry, object_record, save_jpeg, write_fragment, write_yolo_labels
from perception.labeling.inputs import image_files
from perception.labeling.settings import LabelSettings

TRACKS_NAME, MOT_NAME, VIDEO_NAME, BAG_NAME = "tracks.jsonl", "tracks.mot.txt", "annotated.mp4", "detections"
IMAGES_RECORDS_NAME = "detections.jsonl"


class InputFailed(Exception):
    """The input cannot be labeled at all (not a video, no image topic...); the message is one line."""


@dataclass
class WorkResult:
    """What one input (or chunk) gave: frames written, objects matched, damage by kind and in words."""

    frames: int = 0
    detections: int = 0
    seconds: float = 0.0
    damage: dict = field(default_factory=dict)
    reason: str = ""  # the damage in words, "" when intact
    phrases: list[str] = field(default_factory=list)


def read_records(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _finish(folder: Path, frames: list[dict], settings: LabelSettings, phrases: list[str]) -> None:
    """The input's dataset fragment, and its YOLO labels when asked (the JPEG frames are written as they come)."""
    write_fragment(folder, frames)
    if settings.yolo:
        write_yolo_labels(folder, frames, phrases)


def label_video(detector, settings: LabelSettings, path: str, folder: Path, start: float = 0.0,
                end: float | None = None) -> WorkResult:
    """Detect and track in ``path`` between ``start`` and ``end`` seconds, as `gdino video` does."""
    from perception.video.decode import VideoInputError
    from perception.video.job import VideoJobConfig, process_video
    from perception.video.outputs import VideoOutputs

    outputs = VideoOutputs(str(folder / VIDEO_NAME), str(folder / TRACKS_NAME), str(folder / MOT_NAME))
    config = VideoJobConfig(batch_size=settings.batch_size, start_time=start, end_time=end, tracker=settings.tracker)
    try:
        summary = process_video(detector, settings.prompt, path, outputs, config)
    except VideoInputError as error:
        raise InputFailed(str(error)) from error
    if not settings.annotate and os.path.exists(outputs.video):
        os.remove(outputs.video)  # process_video always encodes one; the user did not ask for it
    report = summary.damage
    damage = {name: value for name, value in (
        ("missing_frames", report.missing_frames), ("corrupt_frames", report.corrupt_frames),
        ("undecodable_packets", report.undecodable_packets), ("repaired_timestamps", report.repaired_timestamps),
        ("refused_frames", summary.refused_frames)) if value}
    if report.demux_error:
        damage["demux_errors"] = 1
    words = "; ".join(text for text in (report.describe() if report.damaged else "", summary.describe_refusals()) if text)
    if summary.frames == 0 and not words:
        words = "no frame could be decoded"
        damage["no_frames"] = 1
    return WorkResult(summary.frames, 0, summary.seconds, damage, words, list(detector.set_prompt(settings.prompt)))


def finish_video(folder: Path, path: str, settings: LabelSettings, phrases: list[str]) -> int:
    """Fragment, JPEG frames and YOLO labels from the video's ``tracks.jsonl``; returns the objects matched."""
    from perception.video.decode import VideoReader, probe

    info = probe(path)
    sampler = FrameSampler(settings.every, settings.every_seconds)
    frames, detections = [], 0
    for record in read_records(folder / TRACKS_NAME):
        objects = [{key: track[key] for key in ("id", "label", "score", "box")} for track in record["tracks"]
                   if track["matched"]]
        detections += len(objects)
        if sampler.keep("video", record["time"]):
            frames.append(frame_entry(f"{record['frame']:06d}", info.width, info.height,
                                      {"frame": record["frame"], "time": record["time"]}, objects))
    if settings.jpeg:  # decoded again: the model's pass keeps no frame
        wanted = {frame["source"]["time"]: frame["name"] for frame in frames}
        for decoded in VideoReader(path):
            if round(decoded.time, 6) in wanted:
                save_jpeg(folder, wanted[round(decoded.time, 6)], decoded.image)
    _finish(folder, frames, settings, phrases)
    return detections


def label_bag(detector, settings: LabelSettings, path: str, folder: Path) -> WorkResult:
    """Detect and track in every camera of the bag, as `gdino bag` does, recording each frame's objects."""
    from perception.bags.damage import ReadDamage
    from perception.bags.inputs import BagInputError, open_bag
    from perception.bags.job import BagJobConfig, process_bag
    from perception.bags.messages import bag_typestore
    from perception.bags.sources import SourceChoiceError, choose_cameras
    from perception.labeling.bag_records import RecordingBagOutput
    from perception.streams import MultiStreamDetector

    try:
        bag = open_bag(Path(path))
        topics_damage = ReadDamage()
        cameras = choose_cameras(bag.topics(topics_damage), None)
    except (BagInputError, SourceChoiceError) as error:
        detail = f" ({topics_damage.describe()})" if topics_damage.damaged else ""
        raise InputFailed(f"{error}{detail}") from error
    pipeline = MultiStreamDetector(detector, settings.tracker)
    phrases = pipeline.set_prompt(settings.prompt)
    output = RecordingBagOutput(folder / BAG_NAME, bag_typestore(), cameras, settings.annotate, folder / TRACKS_NAME,
                                FrameSampler(settings.every, settings.every_seconds), settings.jpeg)
    summary = process_bag(pipeline, bag, output, BagJobConfig(cameras, settings.batch_size, settings.max_pixels))
    damage = {**{f"malformed_{kind}": n for kind, n in summary.malformed.items()},
              **{f"refused_{kind}": n for kind, n in summary.refused.items()}}
    if summary.damage.damaged:
        damage.update({key: value for key, value in summary.damage.as_dict().items()
                       if key != "stops" and isinstance(value, int) and value and key != "messages_read"})
        damage["read_stops"] = len(summary.damage.stops)
    words = [summary.damage.describe()] if summary.damage.damaged else []
    words += [f"messages that are no usable image: {dict(summary.malformed)}"] if summary.malformed else []
    words += [f"frames the detector refused: {dict(summary.refused)}"] if summary.refused else []
    if not summary.frames:
        damage["no_frames"] = 1
        words.append("no frame could be used")
    _finish(folder, output.kept, settings, phrases)
    return WorkResult(sum(summary.frames.values()), sum(summary.detections.values()), summary.seconds, damage,
                      "; ".join(words), phrases)


def label_images(detector, settings: LabelSettings, path: str, folder: Path) -> WorkResult:
    """Detect (no tracking) in every image of the folder, ``batch_size`` images per model call."""
    from perception.camera_messages import MalformedImageError, decode_rgb
    from perception.streams import MultiStreamDetector

    pipeline = MultiStreamDetector(detector, None)
    phrases = pipeline.set_prompt(settings.prompt)
    files, started = image_files(path), time.perf_counter()
    problems: Counter = Counter()
    frames, records, detections = [], [], 0
    for first in range(0, len(files), settings.batch_size):
        batch = []
        for index in range(first, min(first + settings.batch_size, len(files))):
            try:
                batch.append((index, decode_rgb(np.fromfile(files[index], np.uint8), settings.max_pixels,
                                                what=f"file {files[index].name}")))
            except (OSError, MalformedImageError) as error:
                problems["unreadable_images"] += 1
                records.append({"frame": index, "file": files[index].name, "error": str(error)})
        result = pipeline.process([(str(index), rgb) for index, rgb in batch])
        for (index, rgb), found, error in zip(batch, result.objects, result.errors):
            if found is None:
                problems["refused_images"] += 1
                records.append({"frame": index, "file": files[index].name, "error": f"refused: {error}"})
                continue
            objects = [object_record(obj) for obj in found]
            detections += len(objects)
            height, width = rgb.shape[:2]
            records.append({"frame": index, "file": files[index].name, "width": width, "height": height,
                            "tracks": objects})
            name = f"{index:06d}"
            frames.append(frame_entry(name, width, height, {"frame": index, "file": files[index].name}, objects))
            if settings.jpeg:
                save_jpeg(folder, name, rgb)
    records.sort(key=lambda record: record["frame"])
    (folder / IMAGES_RECORDS_NAME).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    _finish(folder, frames, settings, phrases)
    words = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in problems.items())
    return WorkResult(len(frames), detections, time.perf_counter() - started, dict(problems),
                      f"{words} of {len(files)}" if words else "", phrases)
