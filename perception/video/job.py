"""The video job: decode, detect in batches, track, annotate, encode, all overlapping.

Three threads joined by bounded queues::

    decode (PyAV, FFmpeg threads) -> frames -> inference (detector batches + tracker) -> results
        -> caller's thread: draw, encode, write JSON Lines / MOTChallenge, progress

The caller's thread owns every output file (perception.video.write). Ctrl-C or SIGTERM stop the run
at a frame boundary and a failure in any stage stops it too; frames already processed are still
written, the others dropped, and the outputs are closed in ``finally``: the video stays playable, the
JSON lines are complete, both hold the same frames, and the log says which. A frame the detector
refuses (it raises for that frame alone) stops nothing: it is tracked without detections, marked
in its JSON line, and counted.

Frame stride: the detector runs on every ``frame_stride``-th frame (counted from the start time); the
tracker predicts the frames in between (norfair's period), and every frame is written.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from perception.pipeline_stages import END, Stage, StopSignals, get, put
from perception.streams import detect_each
from perception.tracking import ObjectTracker, detection_floor
from perception.tracking.frames import stream_time
from perception.tracking.config import TrackerConfig
from perception.types import Detections
from perception.video.decode import DamageReport, DecodedFrame, VideoInfo, VideoReader
from perception.video.encode import choose_encoder, max_side, output_size
from perception.video.outputs import VideoOutputs
from perception.video.write import OutputWriter

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


@dataclass
class VideoRunSummary:
    frames: int  # frames in every output
    detected_frames: int  # frames the detector ran on
    damage: DamageReport
    encoder: str
    seconds: float  # wall time from the first decode to the last write
    refusals: Counter = field(default_factory=Counter)  # frames the detector refused, by reason

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def refused_frames(self) -> int:
        return sum(self.refusals.values())

    def describe_refusals(self) -> str:
        """'3 frames refused by the detector (RuntimeError: ...)', or '' when none was."""
        if not self.refusals:
            return ""
        reasons = "; ".join(f"{count}x {reason}" for reason, count in self.refusals.most_common())
        return f"{self.refused_frames} frames refused by the detector ({reasons})"


def _refusal(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


class _Inference:
    """Groups decoded frames into detector batches, then tracks every frame in order."""

    def __init__(self, detector: FrameDetector, tracker: ObjectTracker, config: VideoJobConfig) -> None:
        self.detector, self.tracker, self.config = detector, tracker, config
        self.detected_frames = 0
        self.refusals: Counter = Counter()
        self._last_time: float | None = None  # the tracker's time of the previous frame

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

    def _detect(self, frames: list[DecodedFrame], box_threshold: float) -> list[Detections | str]:
        """Each frame's detections, or why the detector refused it (streams.detect_each: one frame the
        detector cannot take costs no other frame)."""
        detections, errors = detect_each(self.detector, [frame.image for frame in frames], box_threshold)
        outcomes: list[Detections | str] = []
        for frame, frame_detections, error in zip(frames, detections, errors):
            if error is None:
                outcomes.append(frame_detections)
                continue
            reason = _refusal(error)
            if reason not in self.refusals:
                logger.warning("the detector refused frame %d (%.3f s): %s", frame.index, frame.time, reason)
            self.refusals[reason] += 1
            outcomes.append(reason)
        return outcomes

    def _track_batch(self, pending: list[DecodedFrame], results: queue.Queue, stop: threading.Event) -> bool:
        if stop.is_set():
            return False
        to_detect = [frame for frame in pending if self.is_detected(frame)]
        box_threshold = self.detector.box_threshold
        floor = detection_floor(box_threshold, self.config.tracker)
        outcomes = iter(self._detect(to_detect, floor) if to_detect else [])
        for frame in pending:
            outcome = next(outcomes) if self.is_detected(frame) else None
            refusal = outcome if isinstance(outcome, str) else None
            frame_detections = None if refusal else outcome
            self.detected_frames += frame_detections is not None
            # A damaged file's timestamps may step back: the tracker's time stands still instead.
            self._last_time = stream_time(self._last_time, frame.time, self.config.tracker.frame_rate)
            tracks = self.tracker.update(frame_detections, frame=frame.image, period=self.config.frame_stride,
                                         start_threshold=box_threshold, timestamp=self._last_time)
            if not put(results, (frame, tracks, frame_detections is not None, refusal), stop):
                return False
        return True


def _decode(reader: VideoReader, frames: queue.Queue, stop: threading.Event) -> None:
    for frame in reader:
        if not put(frames, frame, stop):
            return
    put(frames, END, stop)


def _expected_frames(info: VideoInfo, config: VideoJobConfig) -> int | None:
    """Frames in the chosen time range according to the header, for the progress bar's ETA."""
    if not info.frames or not info.frame_rate:
        return None
    duration = info.frames / float(info.frame_rate)
    end = duration if config.end_time is None else min(config.end_time, duration)
    return max(0, round((end - config.start_time) * float(info.frame_rate)))


def process_video(detector: FrameDetector, prompt: str, input_path: str, outputs: VideoOutputs,
                  config: VideoJobConfig | None = None, progress: bool = False) -> VideoRunSummary:
    """Detect and track `prompt` in a video file and write the annotated video and the track records.

    Raises perception.video.decode.VideoInputError for an unreadable input, VideoOutputError for outputs
    that break the rules of perception.video.outputs (or cannot be created) and ValueError for a prompt the
    detector refuses, all before any output is created. Damage inside the input is not an error: every
    decodable frame is processed and the summary's ``damage`` says what was lost; nor is a frame the
    detector refuses (``refusals``). Ctrl-C or SIGTERM (on the main thread), from the first line on, finish
    the frame being written, close the outputs and then raise KeyboardInterrupt; before the first frame
    no output is left.
    """
    config = config or VideoJobConfig()
    stop = threading.Event()
    with StopSignals(stop) as stop_signals:
        reader = VideoReader(input_path, config.start_time, config.end_time, keep_yuv420=True)
        outputs.check(input_path)
        tracker = ObjectTracker(config.tracker)
        tracker.set_phrases(detector.set_prompt(prompt))
        encoder = choose_encoder()
        size = output_size(reader.info.width, reader.info.height, config.output_size, encoder, max_side(encoder))
        if stop.is_set():
            logger.warning("stopped by %s before any output was written", stop_signals.received)
            raise KeyboardInterrupt
        # A model on the CPU competes with the encoder for cores: one encoder thread then (see VideoWriter).
        on_cpu = str(getattr(detector, "device", "cpu")).startswith("cpu")
        writer = OutputWriter(outputs, size, reader.info, encoder, threads=1 if on_cpu else 0)
        inference = _Inference(detector, tracker, config)
        started = time.perf_counter()
        _run_stages(reader, inference, writer, config, progress, stop, stop_signals)
    if reader.report.damaged:
        logger.warning("%s is damaged: %s", input_path, reader.report.describe())
    return VideoRunSummary(writer.records.frames_written, inference.detected_frames, reader.report,
                           writer.video.encoder, time.perf_counter() - started, inference.refusals)


def _run_stages(reader: VideoReader, inference: _Inference, writer: OutputWriter, config: VideoJobConfig,
                progress: bool, stop: threading.Event, stop_signals: StopSignals) -> None:
    """Decode and inference on their threads, writing on this one, until the end, a stop or a failure;
    the outputs are closed whatever happens, and a stop is logged with the frames they hold."""
    depth = config.batch_size * config.frame_stride * config.queue_batches
    frames, results = queue.Queue(maxsize=depth), queue.Queue(maxsize=depth)
    stages: list[Stage] = []
    stages.append(Stage("decode", lambda: _decode(reader, frames, stop), stop))
    stages.append(Stage("inference", lambda: inference.run(frames, results, stop, stages[:1]), stop))
    bar = tqdm(total=_expected_frames(reader.info, config), unit="frame", disable=not progress, dynamic_ncols=True)
    cause = ""
    try:
        for stage in stages:
            stage.start()
        while (item := get(results, stop, stages)) is not END:
            writer.write(*item)
            bar.update()
    except BaseException as error:
        cause = type(error).__name__
        raise
    finally:
        stop.set()
        for stage in stages:
            if stage.is_alive():
                stage.join(timeout=1.0)  # an inference stage may be inside a long batch: not worth waiting for
        bar.close()
        held = writer.close()
        cause = stop_signals.received or cause
        if cause or writer.close_error:
            logger.warning("stopped by %s: %s", cause or "a failure to close the outputs", held)
    if writer.close_error:
        raise writer.close_error
    if stop_signals.received:
        raise KeyboardInterrupt
