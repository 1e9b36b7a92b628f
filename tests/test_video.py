"""The offline pipeline on generated videos written to disk: real PyAV, the real (tiny, random) detector,
the real tracker. Detections of random weights are meaningless; these tests check the plumbing."""
from __future__ import annotations

import os
import shutil
import signal
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from video_samples import (container_duration, damaged_copy, decoded_times, read_jsonl, synthetic_clip, tiny_detector,
                           write_video)

from perception.pipeline_stages import StopSignals
from perception.tracking import ObjectTracker, detection_floor
from perception.training.synthetic import generate_video
from perception.tracking.config import TrackerConfig
from perception.video.decode import VideoInputError, VideoReader
from perception.video.encode import VideoWriter, choose_encoder, max_side, output_size
from perception.video.job import VideoJobConfig, process_video
from perception.video.outputs import VideoOutputError, VideoOutputs

PROMPT = "red heart . blue star ."


@pytest.fixture(scope="module")
def detector():
    return tiny_detector()


def outputs_in(directory, mot: bool = False) -> VideoOutputs:
    mot_path = str(directory / "out.mot") if mot else None
    return VideoOutputs(str(directory / "out.mp4"), str(directory / "out.jsonl"), mot_path)


def test_every_frame_is_written_at_its_input_time(tmp_path, detector):
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 23, frame_rate=Fraction(15))
    outputs = outputs_in(tmp_path, mot=True)
    summary = process_video(detector, PROMPT, str(clip), outputs, VideoJobConfig(batch_size=3, frame_stride=2))
    records = read_jsonl(outputs.jsonl)
    input_times = decoded_times(clip)
    assert summary.frames == len(records) == len(input_times) == 23
    assert summary.detected_frames == 12 and not summary.damage.damaged
    assert [record["frame"] for record in records] == list(range(23))
    assert [record["time"] for record in records] == pytest.approx(input_times, abs=1e-6)
    assert [record["detected"] for record in records] == [index % 2 == 0 for index in range(23)]
    assert decoded_times(outputs.video) == pytest.approx(input_times, abs=1e-3)
    assert container_duration(outputs.video) == pytest.approx(container_duration(clip), abs=1e-3)
    with av.open(outputs.video) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].average_rate == 15
    mot_rows = [line.split(",") for line in open(outputs.mot).read().splitlines()]
    assert len(mot_rows) == sum(len(record["tracks"]) for record in records)
    first = next(record for record in records if record["tracks"])
    track = first["tracks"][0]
    assert set(track) == {"id", "label", "score", "box", "matched", "age"}
    assert track["label"] in ("red heart", "blue star")
    row = next(row for row in mot_rows if int(row[0]) == first["frame"] + 1 and int(row[1]) == track["id"])
    x0, y0, x1, y1 = track["box"]
    assert [float(value) for value in row[2:6]] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.02)


def test_pipeline_matches_a_frame_by_frame_loop(tmp_path, detector):
    """Threads and batching change nothing: the same tracks as detecting and tracking one frame at a time."""
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 12, seed=3)
    outputs = outputs_in(tmp_path)
    tracker_config = TrackerConfig(initialization_delay=0)
    process_video(detector, PROMPT, str(clip), outputs, VideoJobConfig(batch_size=4, tracker=tracker_config))
    tracker = ObjectTracker(tracker_config)
    tracker.set_phrases(detector.set_prompt(PROMPT))
    floor = detection_floor(detector.box_threshold, tracker_config)
    expected = [tracker.update(detector.detect([frame.image], box_threshold=floor)[0], frame=frame.image,
                               start_threshold=detector.box_threshold, timestamp=frame.time)
                for frame in VideoReader(str(clip))]
    records = read_jsonl(outputs.jsonl)
    assert sum(len(tracks) for tracks in expected) > 0
    for record, tracks in zip(records, expected, strict=True):
        assert [track["id"] for track in record["tracks"]] == [track.track_id for track in tracks]
        for written, track in zip(record["tracks"], tracks):
            assert written["label"] == track.label
            assert written["box"] == pytest.approx(track.box_xyxy.tolist(), abs=0.05)


def test_time_range_and_output_size(tmp_path, detector):
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 30)
    outputs = outputs_in(tmp_path)
    config = VideoJobConfig(start_time=1.0, end_time=2.25, output_size=(80, 60))
    summary = process_video(detector, PROMPT, str(clip), outputs, config)
    records = read_jsonl(outputs.jsonl)
    assert summary.frames == len(records) == 13  # 1.0, 1.1, ..., 2.2
    assert records[0]["time"] == pytest.approx(1.0) and records[-1]["time"] == pytest.approx(2.2)
    assert decoded_times(outputs.video) == pytest.approx([0.1 * index for index in range(13)], abs=1e-3)
    with av.open(outputs.video) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (80, 60)
    boxes = np.array([track["box"] for record in records for track in record["tracks"]]).reshape(-1, 4)
    assert len(boxes) and boxes[:, 2].max() > 80, "boxes stay in input pixels, not output pixels"


class WrappedDetector:
    """The real detector behind a test's own `detect` rule (a crash mid-run, a frame it cannot take)."""

    def __init__(self, detector, detect) -> None:
        self.detector, self.rule, self.calls = detector, detect, 0

    box_threshold = property(lambda self: self.detector.box_threshold)

    def set_prompt(self, prompt):
        return self.detector.set_prompt(prompt)

    def detect(self, images, box_threshold=None):
        self.calls += 1
        return self.rule(self, images, box_threshold)


def test_a_failed_batch_is_retried_frame_by_frame_and_nothing_is_lost(tmp_path, detector):
    def third_call_fails(self, images, box_threshold):  # like a batch too large for the device
        if self.calls == 3:
            raise RuntimeError("simulated out of memory")
        return self.detector.detect(images, box_threshold)

    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 24)
    outputs = outputs_in(tmp_path)
    summary = process_video(WrappedDetector(detector, third_call_fails), PROMPT, str(clip), outputs,
                            VideoJobConfig(batch_size=2))
    records = read_jsonl(outputs.jsonl)
    assert summary.frames == summary.detected_frames == len(records) == len(decoded_times(outputs.video)) == 24
    assert not summary.refusals and all(record["detected"] for record in records)


def test_a_refused_frame_costs_no_other_frame_and_is_marked(tmp_path, detector):
    def refuse_blank(self, images, box_threshold):
        if any(image.max() < 20 for image in images):
            raise ValueError("blank\nimage")
        return self.detector.detect(images, box_threshold)

    frames, _ = generate_video(0, 12, (120, 160))
    frames[5][:] = frames[6][:] = 0
    clip = tmp_path / "clip.mp4"
    write_video(clip, frames)
    outputs = outputs_in(tmp_path, mot=True)
    summary = process_video(WrappedDetector(detector, refuse_blank), PROMPT, str(clip), outputs,
                            VideoJobConfig(batch_size=4))
    records = read_jsonl(outputs.jsonl)
    assert summary.frames == len(records) == len(decoded_times(outputs.video)) == 12
    assert [record.get("refused") for record in records] == [None] * 5 + ["ValueError: blank image"] * 2 + [None] * 5
    assert [record["detected"] for record in records] == [True] * 5 + [False] * 2 + [True] * 5
    assert summary.detected_frames == 10 and summary.refusals == {"ValueError: blank image": 2}
    assert summary.describe_refusals() == "2 frames refused by the detector (2x ValueError: blank image)"


def test_a_broken_detector_stops_the_run_and_the_log_says_what_the_outputs_hold(tmp_path, detector, caplog):
    def third_call_returns_nothing(self, images, box_threshold):
        return [] if self.calls == 3 else self.detector.detect(images, box_threshold)

    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 24)
    outputs = outputs_in(tmp_path)
    with pytest.raises(RuntimeError, match="the detector returned 0 results for 2 images"):
        process_video(WrappedDetector(detector, third_call_returns_nothing), PROMPT, str(clip), outputs,
                      VideoJobConfig(batch_size=2))
    records = read_jsonl(outputs.jsonl)
    assert len(records) == len(decoded_times(outputs.video)) == 4  # two batches of two frames got through
    assert [record["frame"] for record in records] == [0, 1, 2, 3]
    held = f"{outputs.video} and {outputs.jsonl} hold frames 0 to 3 (records to 0.300 s)"
    assert f"stopped by RuntimeError: {held}" in caplog.text


def test_an_interrupt_a_library_swallowed_still_stops_the_run_before_any_output(tmp_path, detector, caplog):
    """gdino's main takes Ctrl-C with an outer StopSignals. A Ctrl-C inside a C extension's import comes out
    as an ImportError, which norfair turns into a dummy module (cv2, pandas): the command went on as if
    nothing had happened. process_video must see the signal the outer handler took, and write nothing."""
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 6)
    outputs = outputs_in(tmp_path)
    with StopSignals() as outer:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            pass  # swallowed, like `except ImportError` around an import
        assert outer.received == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            process_video(detector, PROMPT, str(clip), outputs)
    assert "stopped by SIGINT before any output was written" in caplog.text
    assert not os.path.exists(outputs.video) and not os.path.exists(outputs.jsonl)


def test_a_truncated_input_is_processed_up_to_its_last_decodable_frame(tmp_path, detector):
    clip = tmp_path / "clip.mkv"
    synthetic_clip(clip, 40, container_format="matroska")
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(data[: len(data) // 2])
    decodable = len(decoded_times(truncated))
    assert 0 < decodable < 40
    outputs = outputs_in(tmp_path)
    summary = process_video(detector, PROMPT, str(truncated), outputs)
    assert summary.frames == len(read_jsonl(outputs.jsonl)) == len(decoded_times(outputs.video)) == decodable
    assert summary.damage.damaged
    assert summary.damage.expected_frames == 40 and summary.damage.missing_frames == 40 - decodable
    assert f"{40 - decodable} of 40 frames announced by the header missing" in summary.damage.describe()


def test_corrupt_bytes_are_counted(tmp_path, detector):
    clip = tmp_path / "clip.avi"
    synthetic_clip(clip, 40, codec="mpeg4", container_format="avi")
    corrupt = damaged_copy(clip, tmp_path / "corrupt.avi", noise_bytes=400)
    summary = process_video(detector, PROMPT, str(corrupt), outputs_in(tmp_path))
    assert summary.damage.damaged and summary.frames == summary.damage.decoded_frames
    assert summary.damage.corrupt_frames + summary.damage.missing_frames + summary.damage.undecodable_packets > 0


def test_unreadable_inputs_fail_with_one_clear_line_before_any_output(tmp_path, detector):
    clip = tmp_path / "clip.avi"
    synthetic_clip(clip, 3, codec="mpeg4", container_format="avi")
    unknown_codec = tmp_path / "unknown.avi"
    unknown_codec.write_bytes(clip.read_bytes().replace(b"FMP4", b"QQQQ"))
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    cases = {
        str(tmp_path / "missing.mp4"): "missing.mp4: no such file",
        str(unknown_codec): "unknown video codec, this FFmpeg build has no decoder for it",
        str(not_a_video): "as a video: Invalid data found when processing input",
    }
    outputs = outputs_in(tmp_path)
    for path, message in cases.items():
        with pytest.raises(VideoInputError, match=message) as caught:
            process_video(detector, PROMPT, path, outputs)
        assert "\n" not in str(caught.value)
    assert not os.path.exists(outputs.video) and not os.path.exists(outputs.jsonl)


def test_h264_is_chosen_here_and_the_mpeg4_fallback_plays(tmp_path):
    assert choose_encoder() == "libx264"  # this FFmpeg build has it; the fallback is for builds without
    path = tmp_path / "fallback.mp4"
    with VideoWriter(str(path), 64, 48, Fraction(10), Fraction(1, 10), encoder="mpeg4") as writer:
        for index in range(5):
            writer.write(np.full((48, 64, 3), 40 * index, np.uint8), pts=index)
    assert decoded_times(path) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-3)


@pytest.mark.parametrize("encoder", ["libx264", "mpeg4"])
def test_frames_on_disk_is_what_a_reader_finds_in_the_file_at_that_moment(tmp_path, encoder):
    """The JSON lines are kept in step with the video by this count: it must hold after every write."""
    path, snapshot = tmp_path / "out.mp4", tmp_path / "snapshot.mp4"
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 64, 3), dtype=np.uint8)
    found = []
    with VideoWriter(str(path), 64, 48, Fraction(10), Fraction(1, 10), encoder=encoder, threads=1) as writer:
        for index, image in enumerate(images):
            writer.write(image, pts=index)
            if path.exists():  # created with the first packet the encoder emits
                shutil.copy(path, snapshot)
                found.append((len(decoded_times(snapshot)), writer.frames_on_disk))
            else:
                found.append((0, writer.frames_on_disk))
    assert [on_disk for _, on_disk in found] == [count for count, _ in found]
    assert found[-1][1] >= 5 and writer.frames_on_disk == len(decoded_times(path)) == 8


@pytest.mark.parametrize(
    "input_size, encoder, expected",
    [
        ((640, 480), "libx264", (640, 480)),
        ((3, 5), "libx264", (2, 4)),  # 4:2:0 needs even sides
        ((1, 3000), "libx264", (2, 3000)),  # a side of 1 doubles rather than vanish
        ((2, 40000), "libx264", (2, 16384)),  # libx264 opens up to 16384 a side
        ((40000, 30000), "libx264", (16384, 12288)),
        ((10000, 100), "mpeg4", (8190, 82)),
    ],
)
def test_default_output_size_is_even_and_fits_the_encoder(input_size, encoder, expected):
    assert output_size(*input_size, None, encoder, max_side(encoder)) == expected
    assert output_size(*input_size, (64, 48), encoder, max_side(encoder)) == (64, 48)


def test_the_largest_sizes_the_encoders_open(tmp_path):
    for encoder in ("libx264", "mpeg4"):
        side = max_side(encoder)
        VideoWriter(str(tmp_path / "ok.mp4"), 2, side, Fraction(10), Fraction(1, 10), encoder=encoder).close()
        with pytest.raises(VideoOutputError, match=f"the {encoder} encoder refuses 2x{side + 2} video"):
            VideoWriter(str(tmp_path / "no.mp4"), 2, side + 2, Fraction(10), Fraction(1, 10), encoder=encoder)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"batch_size": 0}, r"batch_size must be in \[1, 256\]; got 0"),
        ({"frame_stride": 16}, r"frame_stride must be in \[1, tracker hit_counter_max\] = \[1, 15\]"),
        ({"start_time": -1.0}, r"start_time must be >= 0 seconds"),
        ({"start_time": 2.0, "end_time": 1.0}, r"end_time must be after start_time \(2.0 s\)"),
        ({"output_size": (641, 480)}, r"output_size must be even numbers >= 2"),
    ],
)
def test_job_config_errors(values, message):
    with pytest.raises(ValueError, match=message):
        VideoJobConfig(**values)
