"""Offline video pipeline: decode, detect in batches, track, annotate, encode, all overlapping.

Three threads joined by bounded queues::

    decode (PyAV, FFmpeg threads) -> frames -> inference (detector batches + tracker) -> results
        -> caller's thread: draw, encode, write JSON Lines / MOTChallenge, progress

The caller's thread owns every output file. Ctrl-C or SIGTERM stop the run at a frame boundary and a
failure in any stage stops it too; frames already processed are still written, the others dropped,
and the outputs are closed in ``finally``: the video stays playable, the JSON lines are complete up to
the last frame written, and both always hold the same frames.

Frame stride: the detector runs on every ``frame_stride``-th frame (counted from the start time); the
tracker predicts the frames in between (norfair's period), and every frame is written.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from perception.drawing import draw_objects, draw_objects_yuv420, yuv420_planes
from perception.pipeline_stages import END, Stage, StopSignals, get, put
from perception.track_records import TrackRecordWriter
from perception.streams import LabeledBox
from perception.tracking import ObjectTracker, Track, detection_floor
from perception.tracking_config import TrackerConfig
from perception.types import Detections
from perception.video_io import DamageReport, DecodedFrame, VideoInfo, VideoReader, VideoWriter

logger = logging.getLogger(__name__)

class FrameDetector(Protocol):
    """What the pipeline needs from a detector (perception.detector.GroundingDinoDetector has it)."""

    box_threshold: float

    def set_prompt(self, prompt: str) -> list[str]: ...

    def detect(self, images: list[np.ndarray], box_threshold: float | None = None) -> list[Detections]: ...


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class VideoJobConfig:
    """How one video is processed (the detector and its thresholds are configured separately)."""

    batch_size: int = 4  # frames per detector call
    frame_stride: int = 1  # detector on every n-th frame; at most tracker.hit_counter_max or tracks die between
    start_time: float = 0.0  # seconds into the input
    end_time: float | None = None  # seconds into the input, exclusive; None reads to the end
    output_size: tuple[int, int] | None = None  # (width, height), even; None keeps the input size
    # Batches (of batch_size * frame_stride frames) each of the two queues holds. One lets decoding and
    # encoding overlap the model; two also absorb jitter. Decoded frames in memory (RGB plus 4:2:0, 4.5
    # bytes a pixel): up to (1 + 2 * queue_batches) batches, e.g. 5 * 4 VGA frames = 28 MB, but
    # 5 * 4 * 15 4K frames = 11 GB.
    queue_batches: int = 2
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        _check(1 <= self.batch_size <= 256, f"video batch_size must be in [1, 256]; got {self.batch_size}")
        _check(1 <= self.frame_stride <= self.tracker.hit_counter_max,
               f"video frame_stride must be in [1, tracker hit_counter_max] = [1, {self.tracker.hit_counter_max}] "
               f"(tracks must survive between detections); got {self.frame_stride}")
        _check(math.isfinite(self.start_time) and self.start_time >= 0,
               f"video start_time must be >= 0 seconds; got {self.start_time}")
        _check(self.end_time is None or self.end_time > self.start_time,
               f"video end_time must be after start_time ({self.start_time} s); got {self.end_time}")
        if self.output_size is not None:
            width, height = self.output_size
            _check(width >= 2 and height >= 2 and width % 2 == 0 and height % 2 == 0,
                   f"video output_size must be even numbers >= 2 (4:2:0 video); got {width}x{height}")
        _check(1 <= self.queue_batches <= 16, f"video queue_batches must be in [1, 16]; got {self.queue_batches}")


@dataclass(frozen=True)
class VideoOutputs:
    video: str  # annotated MP4
    jsonl: str  # one JSON line per frame, see perception.track_records
    mot: str | None = None  # MOTChallenge text, optional


@dataclass
class VideoRunSummary:
    frames: int  # frames in every output
    detected_frames: int  # frames the detector ran on
    damage: DamageReport
    encoder: str
    seconds: float  # wall time from the first decode to the last write

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class _Inference:
    """Groups decoded frames into detector batches, then tracks every frame in order."""

    def __init__(self, detector: FrameDetector, tracker: ObjectTracker, config: VideoJobConfig) -> None:
        self.detector, self.tracker, self.config = detector, tracker, config
        self.detected_frames = 0

    def is_detected(self, frame: DecodedFrame) -> bool:
        return frame.index % self.config.frame_stride == 0

    def run(self, frames: queue.Queue, results: queue.Queue, stop: threading.Event, stages: list[Stage]) -> None:
        pending: list[DecodedFrame] = []
        while True:
            item = get(frames, stop, stages)
            if item is END:
                break
            # A batch closes when the next frame to detect would overflow it, so the frames after the
            # last detected one are tracked before the following batch's detections arrive.
            if self.is_detected(item) and sum(map(self.is_detected, pending)) == self.config.batch_size:
                if not self._track_batch(pending, results, stop):
                    return
                pending = []
            pending.append(item)
        if not stop.is_set() and self._track_batch(pending, results, stop):
            put(results, END, stop)

    def _track_batch(self, pending: list[DecodedFrame], results: queue.Queue, stop: threading.Event) -> bool:
        if stop.is_set():
            return False
        to_detect = [frame for frame in pending if self.is_detected(frame)]
        box_threshold = self.detector.box_threshold
        floor = detection_floor(box_threshold, self.config.tracker)
        detections = iter(self.detector.detect([frame.image for frame in to_detect], box_threshold=floor)
                          if to_detect else [])
        self.detected_frames += len(to_detect)
        for frame in pending:
            frame_detections = next(detections) if self.is_detected(frame) else None
            tracks = self.tracker.update(frame_detections, frame=frame.image, period=self.config.frame_stride,
                                         start_threshold=box_threshold)
            if not put(results, (frame, tracks, frame_detections is not None), stop):
                return False
        return True


def _decode(reader: VideoReader, frames: queue.Queue, stop: threading.Event) -> None:
    for frame in reader:
        if not put(frames, frame, stop):
            return
    put(frames, END, stop)


def output_size(info: VideoInfo, requested: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) of the output: the request, or the input size rounded down to even numbers."""
    if requested is not None:
        return requested
    size = (info.width - info.width % 2, info.height - info.height % 2)
    if size != (info.width, info.height):
        logger.info("input is %dx%d; 4:2:0 output needs even sizes: writing %dx%d", info.width, info.height, *size)
    return size


def _expected_frames(info: VideoInfo, config: VideoJobConfig) -> int | None:
    """Frames in the chosen time range according to the header, for the progress bar's ETA."""
    if not info.frames or not info.frame_rate:
        return None
    duration = info.frames / float(info.frame_rate)
    end = duration if config.end_time is None else min(config.end_time, duration)
    return max(0, round((end - config.start_time) * float(info.frame_rate)))


def _write_annotated(writer: VideoWriter, frame: DecodedFrame, tracks: list[Track], size: tuple[int, int]) -> None:
    """Write the frame resized to the output size with every track drawn (boxes scaled along): on the
    decoded 4:2:0 planes when the reader kept them, else on the RGB image."""
    height, width = frame.image.shape[:2]
    scale = np.array([size[0] / width, size[1] / height] * 2, np.float32)
    boxes = [LabeledBox(t.label, t.score, t.box_xyxy * scale, str(t.track_id)) for t in tracks]
    if frame.yuv420 is not None:
        planes = frame.yuv420 if (width, height) == size else _resized_yuv420(frame.yuv420, height, width, size)
        writer.write_yuv420(draw_objects_yuv420(planes, size[1], size[0], boxes), frame.pts)
        return
    image = frame.image if (width, height) == size else cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
    writer.write(draw_objects(image, boxes), frame.pts)


def _resized_yuv420(planes: np.ndarray, height: int, width: int, size: tuple[int, int]) -> np.ndarray:
    """A packed yuv420p frame resized plane by plane to size (width, height), both even."""
    resized = [cv2.resize(plane, (size[0] // factor, size[1] // factor), interpolation=cv2.INTER_AREA).reshape(-1)
               for plane, factor in zip(yuv420_planes(planes, height, width), (1, 2, 2))]
    return np.concatenate(resized).reshape(size[1] * 3 // 2, size[0])  # PyAV's packed yuv420p layout


def process_video(detector: FrameDetector, prompt: str, input_path: str, outputs: VideoOutputs,
                  config: VideoJobConfig | None = None, progress: bool = False) -> VideoRunSummary:
    """Detect and track `prompt` in a video file and write the annotated video and the track records.

    Raises perception.video_io.VideoInputError for an unreadable input and ValueError for a prompt the
    detector refuses, both before any output is created. Damage inside the input is not an error:
    every decodable frame is processed and the summary's ``damage`` says what was lost. Ctrl-C or
    SIGTERM (on the main thread) finish the frame being written, close the outputs and then raise
    KeyboardInterrupt.
    """
    config = config or VideoJobConfig()
    reader = VideoReader(input_path, config.start_time, config.end_time, keep_yuv420=True)
    tracker = ObjectTracker(config.tracker)
    tracker.set_phrases(detector.set_prompt(prompt))
    size = output_size(reader.info, config.output_size)
    inference = _Inference(detector, tracker, config)
    depth = config.batch_size * config.frame_stride * config.queue_batches
    frames, results = queue.Queue(maxsize=depth), queue.Queue(maxsize=depth)
    stop = threading.Event()
    stages: list[Stage] = []
    stages.append(Stage("decode", lambda: _decode(reader, frames, stop), stop))
    stages.append(Stage("inference", lambda: inference.run(frames, results, stop, stages[:1]), stop))
    # A model on the CPU competes with the encoder for cores: one encoder thread then (see VideoWriter).
    on_cpu = str(getattr(detector, "device", "cpu")).startswith("cpu")
    writer = VideoWriter(outputs.video, size[0], size[1], reader.info.frame_rate, reader.info.time_base,
                         threads=1 if on_cpu else 0)
    records = TrackRecordWriter(outputs.jsonl, outputs.mot)
    bar = tqdm(total=_expected_frames(reader.info, config), unit="frame", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        with StopSignals(stop) as stop_signals:
            for stage in stages:
                stage.start()
            while (item := get(results, stop, stages)) is not END:
                frame, tracks, detected = item
                _write_annotated(writer, frame, tracks, size)
                records.write(frame.index, frame.time, detected, tracks)
                bar.update()
    except BaseException as error:
        _log_stop(type(error).__name__, records.frames_written, outputs)
        raise
    finally:
        stop.set()
        for stage in stages:
            if stage.is_alive():
                stage.join(timeout=1.0)  # an inference stage may be inside a long batch: not worth waiting for
        bar.close()
        try:
            writer.close()
        finally:
            records.close()
    if stop_signals.received:
        _log_stop(stop_signals.received, records.frames_written, outputs)
        raise KeyboardInterrupt
    if reader.report.damaged:
        logger.warning("%s is damaged: %s", input_path, reader.report.describe())
    return VideoRunSummary(records.frames_written, inference.detected_frames, reader.report, writer.encoder,
                           time.perf_counter() - started)


def _log_stop(cause: str, frames: int, outputs: VideoOutputs) -> None:
    logger.warning("stopped by %s after %d frames; %s and %s are complete up to that frame",
                   cause, frames, outputs.video, outputs.jsonl)
