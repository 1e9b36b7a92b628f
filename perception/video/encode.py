"""The encode step: annotated frames into a fragmented MP4 with PyAV, at the input's timestamps.

A fragmented MP4 (one fragment per frame, flushed per packet) stays playable when the process is killed
outright: it holds every frame the encoder had emitted (:attr:`VideoWriter.frames_on_disk`).
"""
from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np

from perception.video.outputs import VideoOutputError

logger = logging.getLogger(__name__)

# Encoders in order of preference: H.264 plays everywhere; MPEG-4 Part 2 is in every FFmpeg build.
H264_ENCODERS = ("libx264", "libopenh264")
FALLBACK_ENCODER = "mpeg4"
_MP4_OPTIONS = {"movflags": "frag_every_frame+empty_moov+default_base_moof", "flush_packets": "1"}
# ultrafast: the encoder shares the CPU with the model; on 2 cores it lifts the pipeline/model ratio by
# about 3 points over veryfast at the same CRF (files are larger, quality alike).
# No B-frames: decode order equals display order, so a fragmented MP4 (which has no edit list to hide a
# negative decode time) keeps every frame at its input time, and nothing waits for reordering.
_ENCODER_OPTIONS = {"libx264": {"preset": "ultrafast", "crf": "23", "bf": "0"}}
# Largest width or height each encoder opens with (tests/test_video.py checks them); MPEG-4 Part 2
# stores sizes in 13 bits (8191, made even).
_MAX_SIDE = {"libx264": 16384, "mpeg4": 8190}


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


def max_side(encoder: str) -> int | None:
    """The largest width or height the encoder opens with (measured with this FFmpeg), None if unknown."""
    return _MAX_SIDE.get(encoder)


class VideoWriter:
    """Writes RGB frames to a fragmented MP4 at the input's frame rate and time base.

    ``write(image, pts)`` takes pts in ``time_base`` units; they are shifted so the video starts at 0
    and must increase. Close it (or use ``with``) to flush the encoder; frames written before a crash
    stay playable even without closing: :attr:`frames_on_disk` says how many.
    """

    def __init__(self, path: str, width: int, height: int, frame_rate: Fraction, time_base: Fraction,
                 encoder: str | None = None, threads: int = 0) -> None:
        """threads: encoder threads, 0 lets FFmpeg choose (one per core and more); 1 when the encoder shares
        the CPU with a model, where its extra threads only take cores from the model (on 2 cores the
        pipeline/model ratio of `gdino bench video` went from 0.90 to 0.93, means of 3 and 5 runs).

        Raises VideoOutputError when the file cannot be created or the encoder refuses the size; the
        encoder is opened here so that happens before any frame is processed."""
        if threads < 0:
            raise ValueError(f"encoder threads must be >= 0 (0: FFmpeg chooses); got {threads}")
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise ValueError(f"output size must be even and at least 2x2 (4:2:0 video); got {width}x{height}")
        self.encoder = encoder or choose_encoder()
        try:
            self._container = av.open(path, "w", format="mp4", options=_MP4_OPTIONS)
        except av.error.FFmpegError as error:
            raise VideoOutputError(f"cannot write {path}: {error.strerror}") from error
        try:
            self._stream = self._container.add_stream(self.encoder, rate=frame_rate,
                                                      options=_ENCODER_OPTIONS.get(self.encoder, {}))
            self._stream.codec_context.thread_count = threads
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.time_base = time_base
            self._stream.codec_context.time_base = time_base
            self._stream.codec_context.open()
        except av.error.FFmpegError as error:
            self._container.close()
            raise VideoOutputError(f"the {self.encoder} encoder refuses {width}x{height} video for {path}: "
                                   f"{error.strerror}") from error
        except BaseException:
            self._container.close()
            raise
        self._time_base = time_base  # the stream's own changes to the muxer's (1/10240 for 10 fps MP4)
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self.frames_written = 0
        self._packets_muxed = 0
        self._finished = False  # closed without an error: every muxed frame is in the file

    @property
    def frames_on_disk(self) -> int:
        """Frames a reader finds in the file now, even if the process dies this instant.

        Both encoders emit one packet per frame in display order (no B-frames, no dropped frames), some
        frames late (x264's delay); the MP4 muxer writes a frame's fragment when the next frame's packet
        arrives (frag_every_frame), and the last one on close. tests/test_video.py checks both claims.
        """
        return self._packets_muxed if self._finished else max(0, self._packets_muxed - 1)

    def write(self, image: np.ndarray, pts: int) -> None:
        """image: (height, width, 3) uint8 RGB; pts: input timestamp in time_base units."""
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"), pts)

    def write_yuv420(self, planes: np.ndarray, pts: int) -> None:
        """planes: (height * 3 / 2, width) uint8 yuv420p as DecodedFrame.yuv420; pts as in write."""
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv420p"), pts)

    def _encode(self, frame: av.VideoFrame | None, pts: int = 0) -> None:
        """Encode a frame (None flushes the encoder) and mux what the encoder emits."""
        if frame is not None:
            if self._first_pts is None:
                self._first_pts = pts
            pts -= self._first_pts
            if self._last_pts is not None and pts <= self._last_pts:
                raise ValueError(f"frame timestamps must increase; got pts {pts} after {self._last_pts}")
            self._last_pts = pts
            frame.pts = pts
            frame.time_base = self._time_base
        packets = self._stream.encode(frame)
        self._container.mux(packets)
        self._packets_muxed += len(packets)
        self.frames_written += frame is not None

    def close(self) -> None:
        """Flush the encoder's delayed frames and finish the file; safe to call twice."""
        if self._container is None:
            return
        try:
            if self.frames_written:
                self._encode(None)
        finally:
            container, self._container = self._container, None
            container.close()
        self._finished = True

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def output_size(width: int, height: int, requested: tuple[int, int] | None, encoder: str,
                largest_side: int | None) -> tuple[int, int]:
    """(width, height) of the output video: the request, else the input size made even (4:2:0 needs even
    sizes: an odd side loses a pixel, a side of 1 doubles) and scaled down, aspect kept, to the largest side
    the encoder opens with (e.g. 2x40000 -> 2x16384 for libx264)."""
    if requested is not None:
        return requested
    scale = min(1.0, largest_side / max(width, height)) if largest_side else 1.0

    def even(side: int) -> int:
        side = round(side * scale)
        return max(2, side - side % 2)

    size = (even(width), even(height))
    if size != (width, height):
        logger.info("input is %dx%d; the %s output is %dx%d (even sizes%s)", width, height, encoder, *size,
                    f", at most {largest_side} a side" if scale < 1 else "")
    return size
