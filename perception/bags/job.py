"""The loop of `gdino bag`: the chosen cameras' messages in, one Detection2DArray per usable frame out.

Each message is deserialized and decoded (one that cannot be is counted by kind and skipped), frames are
batched across cameras for :class:`perception.streams.MultiStreamDetector` (a frame it refuses is
counted by reason and gets no detections message), and each answered frame is written at its image's bag
timestamp with its header. Ctrl-C or SIGTERM stop before the next message; the frames still waiting in a
batch are dropped, the output is finalized (see :mod:`perception.bags.output`) and KeyboardInterrupt is
raised.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from perception.bags.damage import ReadDamage
from perception.bags.messages import decode_image
from perception.bags.output import BagOutput
from perception.camera_messages import DEFAULT_MAX_PIXELS, DepthImageError, MalformedImageError, frame_seconds
from perception.pipeline_stages import StopSignals

logger = logging.getLogger(__name__)


@dataclass
class BagRunSummary:
    """What a run did, per camera topic, and what it could not use."""

    frames: Counter = field(default_factory=Counter)  # detections messages written
    detections: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)  # messages that are no usable image, per kind
    refused: Counter = field(default_factory=Counter)  # frames the detector refused, per error type
    depth: Counter = field(default_factory=Counter)  # depth images of topics read by default, set aside per topic
    damage: ReadDamage = field(default_factory=ReadDamage)
    seconds: float = 0.0

    @property
    def degraded(self) -> bool:
        """Part of the input could not be used, or no frame at all could be (exit code 3)."""
        return bool(self.malformed or self.refused or self.damage.damaged or not self.frames)


@dataclass(frozen=True)
class BagJobConfig:
    cameras: list[str]  # image topics to read, one per camera (perception.bags.sources.choose_cameras)
    batch_size: int = 1  # frames per detector call, of any cameras
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused unread (kind "too_large")
    # True when the user named the cameras: a depth image there is counted as unusable. Read by default, a
    # topic of depth images (an RGB-D camera's depth stream) is no camera to detect in and is set aside.
    named: bool = False


def process_bag(pipeline, bag, output: BagOutput, config: BagJobConfig) -> BagRunSummary:
    """Detect and track in the chosen cameras of ``bag`` (perception.bags.inputs), writing to ``output``
    (not yet entered). ``pipeline``: a MultiStreamDetector whose prompt is set."""
    summary = BagRunSummary()
    stop = threading.Event()
    started = time.perf_counter()
    stopped_by = ""
    with StopSignals(stop) as signals:
        try:
            with output:  # entering checks the path and creates OUT.partial/; leaving finalizes, always
                try:
                    _read_detect_write(pipeline, bag, output, config, summary, stop)
                except BaseException as error:
                    stopped_by = type(error).__name__
                    raise
        finally:
            if stopped_by:
                _log_stop(stopped_by, output)
    summary.seconds = time.perf_counter() - started
    if signals.received:
        _log_stop(signals.received, output)
        raise KeyboardInterrupt
    return summary


def _read_detect_write(pipeline, bag, output: BagOutput, config: BagJobConfig, summary: BagRunSummary,
                       stop: threading.Event) -> None:
    batch = []  # (camera, bag timestamp, header, rgb)
    for topic, msgtype, timestamp, data in bag.messages(set(config.cameras), summary.damage):
        if stop.is_set():
            return  # the frames waiting in the batch are dropped: stop promptly
        if topic in summary.depth:
            summary.depth[topic] += 1
            continue
        try:
            header, rgb = decode_image(output.typestore, msgtype, data, config.max_pixels)
        except DepthImageError as error:
            if config.named:
                _count(summary.malformed, error.kind, f"{topic} at {timestamp}: skipped", error)
            else:
                summary.depth[topic] += 1
                logger.info("%s carries depth images (%s): not a camera picture, set aside (name it in --topics "
                            "to have it counted)", topic, error)
            continue
        except MalformedImageError as error:
            _count(summary.malformed, error.kind, f"{topic} at {timestamp}: skipped", error)
            continue
        batch.append((topic, timestamp, header, rgb))
        if len(batch) >= config.batch_size:
            _detect_and_write(pipeline, batch, output, summary)
    if batch and not stop.is_set():
        _detect_and_write(pipeline, batch, output, summary)


def _detect_and_write(pipeline, batch: list, output: BagOutput, summary: BagRunSummary) -> None:
    result = pipeline.process([(camera, rgb) for camera, _, _, rgb in batch],
                              [frame_seconds(header, timestamp / 1e9) for _, timestamp, header, _ in batch])
    for (camera, timestamp, header, rgb), objects, error in zip(batch, result.objects, result.errors):
        if objects is None:
            _count(summary.refused, type(error).__name__, f"{camera} at {timestamp}: the detector refused the frame", error)
            continue
        output.write(camera, timestamp, header, rgb, objects)
        summary.frames[camera] += 1
        summary.detections[camera] += len(objects)
    batch.clear()


def _count(counter: Counter, reason: str, what: str, error: Exception) -> None:
    """Count one unusable message; the first of each reason is logged with its message."""
    counter[reason] += 1
    if counter[reason] == 1:
        logger.warning("%s (%s): %s; further ones are only counted", what, reason, error)


def _log_stop(cause: str, output: BagOutput) -> None:
    logger.warning("stopped by %s after %d frames; %s is complete up to that frame", cause, output.frames_written,
                   output.path)
