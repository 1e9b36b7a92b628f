"""The decode step: reading a video file with PyAV (FFmpeg), with damage accounting.

Frames leave this module as (H, W, 3) uint8 RGB arrays (and, on request, the decoder's own 4:2:0
planes). Timestamps are kept as the input's ``pts`` in its stream time base, so the written video
(perception.video.encode) keeps the input's frame rate and frame timing.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from perception.input_files import file_problem

logger = logging.getLogger(__name__)


class VideoInputError(ValueError):
    """The input cannot be read as a video: missing file, not a video, no decoder for its codec."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about the first video stream."""

    width: int
    height: int
    frame_rate: Fraction  # average frames per second
    time_base: Fraction  # seconds per pts unit
    frames: int  # frame count from the header or duration, 0 when neither is known
    codec: str


@dataclass
class DecodedFrame:
    """One decoded frame; index counts the frames read from the chosen start time (0-based)."""

    index: int
    pts: int  # in VideoInfo.time_base units
    time: float  # seconds, pts * time_base
    image: np.ndarray  # (H, W, 3) uint8 RGB
    # The decoder's own 4:2:0 planes, (H * 3 / 2, W) uint8 Y then U then V as PyAV lays them out, when
    # the reader keeps them (keep_yuv420) and the frame is yuv420p with even sizes; else None.
    yuv420: np.ndarray | None = None


@dataclass
class DamageReport:
    """What went wrong while reading; all zero for an intact file."""

    decoded_frames: int = 0
    expected_frames: int = 0  # from the header, 0 when unknown or when a time range was chosen
    corrupt_frames: int = 0  # decoded with concealed errors (FFmpeg's corrupt flag)
    undecodable_packets: int = 0  # packets the decoder rejected
    demux_error: str = ""  # why reading stopped before the end of the file, "" if it did not
    repaired_timestamps: int = 0  # frames without pts, or not after the previous one, given the next slot

    @property
    def missing_frames(self) -> int:
        return max(0, self.expected_frames - self.decoded_frames) if self.expected_frames else 0

    @property
    def damaged(self) -> bool:
        return bool(self.corrupt_frames or self.undecodable_packets or self.demux_error or self.missing_frames
                    or self.repaired_timestamps)

    def describe(self) -> str:
        parts = []
        if self.missing_frames:
            parts.append(f"{self.missing_frames} of {self.expected_frames} frames announced by the header missing")
        if self.corrupt_frames:
            parts.append(f"{self.corrupt_frames} frames decoded with errors")
        if self.undecodable_packets:
            parts.append(f"{self.undecodable_packets} packets undecodable")
        if self.repaired_timestamps:
            parts.append(f"{self.repaired_timestamps} frames without a valid timestamp (given the next slot)")
        if self.demux_error:
            parts.append(f"reading stopped early: {self.demux_error}")
        return "; ".join(parts) if parts else "intact"


def _open_input(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    problem = file_problem(path, "a video file")
    if problem:
        raise VideoInputError(f"{path}: {problem}")
    try:
        container = av.open(path)
    except av.error.FFmpegError as error:
        raise VideoInputError(f"cannot read {path} as a video: {error.strerror}") from error
    problem = ""
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        problem = f"{path} is a still image ({container.format.long_name}), not a video"
    elif not container.streams.video:
        problem = f"{path} has no video stream"
    elif container.streams.video[0].codec_context is None:
        problem = f"{path}: unknown video codec, this FFmpeg build has no decoder for it"
    if problem:
        container.close()
        raise VideoInputError(problem)
    return container, container.streams.video[0]


def _expected_frames(container, stream) -> int:
    if stream.frames:
        return int(stream.frames)
    if container.duration and stream.average_rate:
        return round(container.duration / av.time_base * float(stream.average_rate))
    return 0


def probe(path: str) -> VideoInfo:
    """Header facts of the first video stream; raises :class:`VideoInputError` with one clear line."""
    container, stream = _open_input(path)
    with container:
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            frame_rate=Fraction(stream.average_rate or stream.guessed_rate or 0),
            time_base=Fraction(stream.time_base),
            frames=_expected_frames(container, stream),
            codec=stream.codec_context.name,
        )


class VideoReader:
    """Decodes every decodable frame of a file, with FFmpeg's own threads, inside [start, end) seconds.

    Damage never raises: a packet the decoder rejects is counted and skipped, a demuxer error ends the
    reading and is recorded; see :attr:`report` after iterating.
    """

    def __init__(self, path: str, start_time: float = 0.0, end_time: float | None = None,
                 keep_yuv420: bool = False) -> None:
        """keep_yuv420: also keep each frame's decoded 4:2:0 planes (DecodedFrame.yuv420), so a writer can
        encode them without converting RGB back to YUV (which costs more than decoding)."""
        self.path, self.start_time, self.end_time = path, start_time, end_time
        self.keep_yuv420 = keep_yuv420
        self.info = probe(path)
        self.report = DamageReport()

    def __iter__(self) -> Iterator[DecodedFrame]:
        container, stream = _open_input(self.path)
        stream.thread_type = "AUTO"  # frame and slice threads inside FFmpeg
        trimmed = self.start_time > 0 or self.end_time is not None
        self.report = DamageReport(expected_frames=0 if trimmed else _expected_frames(container, stream))
        with container:
            if self.start_time > 0:
                # Seek to the key frame before start; frames before start are decoded and dropped.
                container.seek(int(self.start_time / stream.time_base), stream=stream, backward=True)
            for frame, pts in self._decode(container, stream):
                time = float(pts * stream.time_base)
                if time < self.start_time:
                    continue
                if self.end_time is not None and time >= self.end_time:
                    break
                self.report.corrupt_frames += int(frame.is_corrupt)
                yuv420 = None
                if (self.keep_yuv420 and frame.format.name == "yuv420p" and frame.width % 2 == 0
                        and frame.height % 2 == 0):
                    yuv420 = frame.to_ndarray(format="yuv420p")
                yield DecodedFrame(self.report.decoded_frames, pts, time, frame.to_ndarray(format="rgb24"), yuv420)
                self.report.decoded_frames += 1

    def _packets(self, container, stream) -> Iterator[av.Packet | None]:
        """Demuxed packets, ending with None (flush the decoder) if the demuxer fails midway."""
        try:
            yield from container.demux(stream)
        except av.error.FFmpegError as error:
            self.report.demux_error = error.strerror or type(error).__name__
            logger.warning("%s: %s", self.path, self.report.demux_error)
            yield None

    def _decode(self, container, stream) -> Iterator[tuple[av.VideoFrame, int]]:
        """Decoded frames with strictly increasing pts (missing or repeated ones are repaired and counted)."""
        step = _frame_step(stream)
        last_pts = None
        for packet in self._packets(container, stream):
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError as error:
                self.report.undecodable_packets += 1
                logger.debug("%s: packet undecodable: %s", self.path, error)
                continue
            for frame in frames:
                pts = frame.pts
                if pts is None or (last_pts is not None and pts <= last_pts):
                    pts = 0 if last_pts is None else last_pts + step
                    self.report.repaired_timestamps += 1
                last_pts = pts
                yield frame, pts


def _frame_step(stream) -> int:
    """One frame's duration in the stream's time base (at least 1)."""
    rate = stream.average_rate or stream.guessed_rate
    return max(1, round(1 / (rate * stream.time_base))) if rate else 1
