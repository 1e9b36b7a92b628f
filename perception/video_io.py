"""Reading and writing video files with PyAV (FFmpeg), with damage accounting on the way in.

Frames cross this module as (H, W, 3) uint8 RGB arrays. Timestamps are kept as the input's ``pts``
in its stream time base, so written videos keep the input's frame rate and frame timing.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

logger = logging.getLogger(__name__)

# Encoders in order of preference: H.264 plays everywhere; MPEG-4 Part 2 is in every FFmpeg build.
H264_ENCODERS = ("libx264", "libopenh264")
FALLBACK_ENCODER = "mpeg4"
# Fragmented MP4 with one fragment per frame, flushed to disk per packet: a run that is killed outright
# (SIGKILL, power loss) still leaves a playable file holding every frame the encoder had emitted.
_MP4_OPTIONS = {"movflags": "frag_every_frame+empty_moov+default_base_moof", "flush_packets": "1"}
# ultrafast: the encoder shares the CPU with the model; on 2 cores it lifts the pipeline/model ratio by
# about 3 points over veryfast at the same CRF (files are larger, quality alike).
# No B-frames: decode order equals display order, so a fragmented MP4 (which has no edit list to hide a
# negative decode time) keeps every frame at its input time, and nothing waits for reordering.
_ENCODER_OPTIONS = {"libx264": {"preset": "ultrafast", "crf": "23", "bf": "0"}}


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
    if not os.path.isfile(path):
        raise VideoInputError(f"input video not found: {path}")
    try:
        container = av.open(path)
    except av.error.FFmpegError as error:
        raise VideoInputError(f"cannot read {path} as a video: {error.strerror}") from error
    if not container.streams.video:
        container.close()
        raise VideoInputError(f"{path} has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise VideoInputError(f"{path}: unknown video codec, this FFmpeg build has no decoder for it")
    return container, stream


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


def _can_encode(name: str) -> bool:
    """codecs_available lists decoders too: check that an encoder of this name exists."""
    try:
        av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        return False
    return True


def choose_encoder() -> str:
    """The first H.264 encoder this FFmpeg build has, else MPEG-4 Part 2 (logged as a warning)."""
    for name in H264_ENCODERS:
        if name in av.codecs_available and _can_encode(name):
            return name
    logger.warning("no H.264 encoder in this FFmpeg build; writing MPEG-4 Part 2 (%s) instead", FALLBACK_ENCODER)
    return FALLBACK_ENCODER


class VideoWriter:
    """Writes RGB frames to a fragmented MP4 at the input's frame rate and time base.

    ``write(image, pts)`` takes pts in ``time_base`` units; they are shifted so the video starts at 0
    and must increase. Close it (or use ``with``) to flush the encoder; frames written before a crash
    stay playable even without closing.
    """

    def __init__(self, path: str, width: int, height: int, frame_rate: Fraction, time_base: Fraction,
                 encoder: str | None = None, threads: int = 0) -> None:
        """threads: encoder threads, 0 lets FFmpeg choose (one per core and more); 1 when the encoder shares
        the CPU with a model, where its extra threads only take cores from the model (on 2 cores the
        pipeline/model ratio of `gdino bench video` went from 0.90 to 0.93, means of 3 and 5 runs)."""
        if threads < 0:
            raise ValueError(f"encoder threads must be >= 0 (0: FFmpeg chooses); got {threads}")
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise ValueError(f"output size must be even and at least 2x2 (4:2:0 video); got {width}x{height}")
        self.encoder = encoder or choose_encoder()
        self._container = av.open(path, "w", format="mp4", options=_MP4_OPTIONS)
        try:
            self._stream = self._container.add_stream(self.encoder, rate=frame_rate,
                                                      options=_ENCODER_OPTIONS.get(self.encoder, {}))
            self._stream.codec_context.thread_count = threads
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.time_base = time_base
            self._stream.codec_context.time_base = time_base
        except BaseException:
            self._container.close()
            raise
        self._time_base = time_base  # the stream's own changes to the muxer's (1/10240 for 10 fps MP4)
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self.frames_written = 0

    def write(self, image: np.ndarray, pts: int) -> None:
        """image: (height, width, 3) uint8 RGB; pts: input timestamp in time_base units."""
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"), pts)

    def write_yuv420(self, planes: np.ndarray, pts: int) -> None:
        """planes: (height * 3 / 2, width) uint8 yuv420p as DecodedFrame.yuv420; pts as in write."""
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv420p"), pts)

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        if self._first_pts is None:
            self._first_pts = pts
        pts -= self._first_pts
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"frame timestamps must increase; got pts {pts} after {self._last_pts}")
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self._time_base
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder's delayed frames and finish the file; safe to call twice."""
        if self._container is None:
            return
        try:
            if self.frames_written:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
