"""The write step: each processed frame annotated into the video, and its tracks into the records, in step.

A frame's JSON line (and MOTChallenge rows) is written only once the video file holds that frame
(:attr:`VideoWriter.frames_on_disk`), so whatever stops the run, SIGKILL included, both hold frames
0 to n - 1 with the same n, except that a kill landing between the two writes leaves the video one
frame ahead. The price, after SIGKILL only: the records of the last frame or two the encoder still held
are lost with those frames.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np

from perception.drawing import draw_objects, draw_objects_yuv420, yuv420_planes
from perception.streams import LabeledBox
from perception.tracking.records import TrackRecordWriter
from perception.tracking import Track
from perception.video.decode import DecodedFrame, VideoInfo
from perception.video.encode import VideoWriter
from perception.video.outputs import VideoOutputError, VideoOutputs


class OutputWriter:
    """Writes each processed frame, annotated, to the video and its tracks to the records, in step."""

    def __init__(self, outputs: VideoOutputs, size: tuple[int, int], info: VideoInfo, encoder: str,
                 threads: int) -> None:
        """Creates the files; raises VideoOutputError (and leaves none) if one cannot be created."""
        self.outputs, self.size = outputs, size
        self.video = VideoWriter(outputs.video, size[0], size[1], info.frame_rate, info.time_base, encoder, threads)
        try:
            self.records = TrackRecordWriter(outputs.jsonl, outputs.mot)
        except OSError as error:
            self.video.close()
            outputs.remove()
            raise VideoOutputError(f"cannot write {error.filename}: {error.strerror}") from error
        # (index, time, detected, tracks, refusal) of frames sent to the encoder but not yet in the file
        self._pending: deque[tuple] = deque()
        self.last_time: float | None = None  # of the last frame in the records
        self.close_error: Exception | None = None  # the first failure while closing

    def write(self, frame: DecodedFrame, tracks: list[Track], detected: bool, refusal: str | None) -> None:
        _write_annotated(self.video, frame, tracks, self.size)
        self._pending.append((frame.index, frame.time, detected, tracks, refusal))
        self._write_records()

    def _write_records(self) -> None:
        while self._pending and self.records.frames_written < self.video.frames_on_disk:
            index, time, detected, tracks, refusal = self._pending.popleft()
            self.records.write(index, time, detected, tracks, refusal)
            self.last_time = time

    def close(self) -> str:
        """Flush and close both files, each even if the other fails, and say in words which frames they hold.

        A failure is named in the words and kept in :attr:`close_error`. A run that wrote no frame keeps no
        output: an empty JSON Lines file must not pass for a finished one.
        """
        problems = []
        for step in (self.video.close, self._write_records, self.records.close):
            try:
                step()
            except Exception as error:  # the others must still run; the caller raises it
                self.close_error = self.close_error or error
                problems.append(f"{type(error).__name__}: {' '.join(str(error).split())}")
        video_frames, record_frames = self.video.frames_on_disk, self.records.frames_written
        if not video_frames and not record_frames:
            self.outputs.remove()
            return "no frame was written and no output kept" + "".join(f" ({problem})" for problem in problems)
        records = " and ".join(path for kind, path in self.outputs.named() if kind != "video")
        if video_frames == record_frames:
            held = f"{self.outputs.video} and {records} hold {_frames(video_frames)}"
        else:
            held = f"{self.outputs.video} holds {_frames(video_frames)}, {records} {_frames(record_frames)}"
        if self.last_time is not None:
            held += f" (records to {self.last_time:.3f} s)"
        return held + "".join(f"; closing failed: {problem}" for problem in dict.fromkeys(problems))


def _frames(count: int) -> str:
    return f"frames 0 to {count - 1}" if count else "no frame"


def _write_annotated(writer: VideoWriter, frame: DecodedFrame, tracks: Sequence[Track], size: tuple[int, int]) -> None:
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
