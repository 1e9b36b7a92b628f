"""`gdino video` on hostile input, run as a user runs it: the installed command in a subprocess, on real
files written with PyAV (or broken on purpose), stopped with real signals. Every outcome must be a
documented exit code with at most one error line and never a traceback; the input is never changed; the
outputs always parse and play, and the video and the JSON lines hold the same frames. The tiny
random-weight model at a small input size keeps each run to seconds (its detections are meaningless)."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from video_samples import damaged_copy, decoded_times, read_jsonl, synthetic_clip, vtest_path, write_video

from perception.cli.main import main

GDINO = str(Path(sys.executable).parent / "gdino")
TINY_MODEL = ["--weights", "random:tiny", "--shortest-edge", "64", "--longest-edge", "96", "--quiet"]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([GDINO, "video", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    """Exit code and stderr, checked for tracebacks (every run must end without one)."""
    stderr = process.communicate(timeout=300)[1]
    assert "Traceback" not in stderr, stderr
    return process.returncode, stderr


def run_all(*commands: list[str]) -> list[tuple[int, str]]:
    """Run `gdino video` once per argument list, side by side (each loads its own model)."""
    return [finish(process) for process in [start(*command) for command in commands]]


def messages(stderr: str) -> list[str]:
    """stderr without the INFO log lines."""
    return [line for line in stderr.splitlines() if not line.startswith("gdino: INFO:")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_outputs_in_step(video: Path, jsonl: Path) -> list[dict]:
    """The JSON lines parse, PyAV plays the video, and both hold the same frames at the same times."""
    records = read_jsonl(jsonl)
    assert [record["frame"] for record in records] == list(range(len(records)))
    assert decoded_times(video) == pytest.approx([record["time"] for record in records], abs=1e-3)
    return records


def test_a_path_that_is_no_video_gets_one_line_and_exit_2(tmp_path):
    empty, text, image, folder, fifo = (tmp_path / name for name in ("empty.mp4", "notes.mp4", "image.mp4",
                                                                     "folder.mp4", "fifo.mp4"))
    empty.write_bytes(b"")
    text.write_text("not a video\n")
    with av.open(str(image), "w", format="image2pipe") as container:  # a PNG, named .mp4
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 24, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")))
    folder.mkdir()
    os.mkfifo(fifo)
    clip = tmp_path / "clip.avi"
    synthetic_clip(clip, 3, codec="mpeg4", container_format="avi")
    bad_yaml = tmp_path / "tracking.yaml"
    bad_yaml.write_text("reid_appearance: [0.5\n")
    cases = [
        ([str(empty)], f"{empty}: is empty (0 bytes)"),
        ([str(text)], f"cannot read {text} as a video: Invalid data found when processing input"),
        ([str(image)], f"{image} is a still image (piped png sequence), not a video"),
        ([str(folder)], f"{folder}: is a directory, not a video file"),
        ([str(fifo)], f"{fifo}: is a named pipe (FIFO), not a video file"),
        ([str(clip), "--tracker-config", str(bad_yaml)], f"tracker config {bad_yaml} is not valid YAML: expected"),
    ]
    output = tmp_path / "out.mp4"
    results = run_all(*[[*args, "--prompt", "a person .", "--output", str(output), *TINY_MODEL] for args, _ in cases])
    for (code, stderr), (_, message) in zip(results, cases):
        assert code == 2 and len(messages(stderr)) == 1, stderr
        assert messages(stderr)[0].startswith(f"gdino video: error: {message}"), stderr
    assert not output.exists() and not output.with_suffix(".jsonl").exists()


def test_outputs_never_replace_the_input_and_an_existing_file_needs_overwrite(tmp_path):
    clip = tmp_path / "clip.avi"
    synthetic_clip(clip, 3, codec="mpeg4", container_format="avi")
    os.link(clip, tmp_path / "hard.avi")
    os.symlink(clip, tmp_path / "soft.avi")
    kept = tmp_path / "out.jsonl"
    kept.write_text("an earlier run's records\n")
    before = digest(clip)
    out = str(tmp_path / "out.mp4")
    cases = [
        (["--output", str(clip)], f"the video output {clip} is the input video"),
        (["--output", str(clip), "--overwrite"], f"the video output {clip} is the input video"),
        (["--output", out, "--jsonl", str(tmp_path / "hard.avi"), "--overwrite"], "JSON Lines output"),
        (["--output", out, "--mot", str(tmp_path / "soft.avi"), "--overwrite"], "MOTChallenge output"),
        (["--output", out, "--jsonl", out, "--overwrite"], f"video and JSON Lines outputs are the same file: {out}"),
        (["--output", str(tmp_path / "missing" / "out.mp4")], "folder of the video output does not exist"),
        (["--output", out], f"{kept} already exists; choose another path or pass --overwrite to replace it"),
    ]
    results = run_all(*[[str(clip), "--prompt", "a person .", *args, *TINY_MODEL] for args, _ in cases])
    for (code, stderr), (_, message) in zip(results, cases):
        assert code == 2 and len(messages(stderr)) == 1 and message in messages(stderr)[0], stderr
    assert digest(clip) == before and kept.read_text() == "an earlier run's records\n"
    assert not Path(out).exists()
    assert run_all([str(clip), "--prompt", "a person .", "--output", out, "--overwrite", *TINY_MODEL])[0][0] == 0
    assert len(assert_outputs_in_step(Path(out), kept)) == 3 and digest(clip) == before


def test_damaged_inputs_are_processed_as_far_as_they_decode_with_exit_3(tmp_path):
    clip = tmp_path / "clip.mkv"
    synthetic_clip(clip, 30, container_format="matroska")
    truncated = damaged_copy(clip, tmp_path / "truncated.mkv", keep=2 / 3)
    avi = tmp_path / "clip.avi"
    synthetic_clip(avi, 30, codec="mpeg4", container_format="avi")
    noisy = damaged_copy(avi, tmp_path / "noisy.avi", noise_bytes=2000)
    header_only = tmp_path / "header_only.avi"  # a header announcing 30 frames, and not one of them
    header_only.write_bytes(avi.read_bytes()[: avi.read_bytes().index(b"movi") + 4])
    counted = r"\d+ (of 30 frames announced by the header missing|frames decoded with errors|packets undecodable)"
    cases = [truncated, noisy, header_only]
    results = run_all(*[[str(path), "--prompt", "red heart .", "--output", str(path.with_suffix(".mp4")),
                         *TINY_MODEL] for path in cases])
    for (code, stderr), path in zip(results, cases):
        assert code == 3 and re.search(f"{re.escape(str(path))} is damaged: {counted}", stderr), stderr
    for path in (truncated, noisy):
        records = assert_outputs_in_step(path.with_suffix(".mp4"), path.with_suffix(".jsonl"))
        assert len(records) == len(decoded_times(path)) > 0
    assert "30 of 30 frames announced by the header missing" in results[2][1]
    # Nothing decodable, nothing kept: an empty JSON Lines file must not pass for a finished run.
    assert not header_only.with_suffix(".mp4").exists() and not header_only.with_suffix(".jsonl").exists()


def test_extreme_aspect_ratios_are_processed_and_written_at_an_encodable_size(tmp_path):
    thin, tall = tmp_path / "thin.avi", tmp_path / "tall.nut"
    ramp = np.linspace(0, 255, 3000, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(3, 2)
    write_video(thin, [ramp] * 5, codec="mpeg4", container_format="avi")  # 2x3000
    write_video(tall, [np.full((20000, 1, 3), 80 * index, np.uint8) for index in range(3)], codec="rawvideo",
                container_format="nut", pix_fmt="rgb24")  # 1x20000: odd, and past libx264's 16384
    results = run_all(*[[str(path), "--prompt", "a person .", "--output", str(path.with_suffix(".mp4")), *TINY_MODEL]
                        for path in (thin, tall)])
    for (code, stderr), path, frames, size in zip(results, (thin, tall), (5, 3), ((2, 3000), (2, 16384))):
        assert code == 0, stderr
        records = assert_outputs_in_step(path.with_suffix(".mp4"), path.with_suffix(".jsonl"))
        assert len(records) == frames and all(record["detected"] for record in records)
        with av.open(str(path.with_suffix(".mp4"))) as container:
            context = container.streams.video[0].codec_context
            assert (context.width, context.height) == size


def start_on_the_real_clip(tmp_path, frames_before: int) -> tuple[subprocess.Popen, Path, Path]:
    """A run on the real clip (795 frames), once its JSON Lines file holds `frames_before` lines."""
    video, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    process = start(str(vtest_path()), "--prompt", "a person .", "--output", str(video), *TINY_MODEL)
    deadline = time.monotonic() + 300
    while not (jsonl.exists() and len(jsonl.read_text().splitlines()) >= frames_before):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"the run wrote fewer than {frames_before} frames in 300 s"
        time.sleep(0.05)
    return process, video, jsonl


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_closes_both_outputs_on_the_same_frames_and_says_which(tmp_path, sig):
    process, video, jsonl = start_on_the_real_clip(tmp_path, 20)
    process.send_signal(sig)
    code, stderr = finish(process)
    records = assert_outputs_in_step(video, jsonl)
    assert code == 130 and 20 <= len(records) < 795
    assert (f"gdino: WARNING: stopped by {sig.name}: {video} and {jsonl} hold frames 0 to {len(records) - 1} "
            f"(records to {records[-1]['time']:.3f} s)") in messages(stderr), stderr
    assert messages(stderr)[-1] == "gdino video: interrupted", stderr


def test_sigkill_leaves_the_video_and_the_records_in_step(tmp_path):
    process, video, jsonl = start_on_the_real_clip(tmp_path, 20)
    process.kill()
    assert finish(process)[0] == -signal.SIGKILL
    records = read_jsonl(jsonl)  # flushed per frame: no partial line
    # Fragmented MP4: playable without its end. A kill can also land while a fragment is being written (FFmpeg
    # writes one in several calls), leaving it torn: a player plays up to it (a rehearsal saw PyAV fail on the
    # last packet), and no record names its frame, as the counts below check.
    times = decoded_times(video, until_damage=True)
    # A frame's line is written once the file holds the frame; a kill between the two writes leaves the
    # video one frame ahead, never the records.
    assert len(records) >= 20 and len(records) <= len(times) <= len(records) + 1
    assert times[: len(records)] == pytest.approx([record["time"] for record in records], abs=1e-3)


def torch_is_loading(process: subprocess.Popen) -> bool:
    """True once the process has mapped libtorch: it is importing torch, seconds before any output exists."""
    try:
        return "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_is_one_line_and_leaves_no_output(tmp_path, sig):
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 5)
    before = digest(clip)
    process = start(str(clip), "--prompt", "a person .", "--output", str(tmp_path / "out.mp4"), *TINY_MODEL)
    deadline = time.monotonic() + 120
    while not torch_is_loading(process):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "torch was not loaded within 120 s"
        time.sleep(0.02)
    process.send_signal(sig)
    code, stderr = finish(process)
    # A library that swallowed the interrupt (norfair turns an ImportError from cv2 or pandas into a dummy,
    # and a Ctrl-C inside a C extension's import is one) leaves the run to stop itself before writing.
    swallowed = f"gdino: WARNING: stopped by {sig.name} before any output was written"
    assert code == 130 and messages(stderr)[-1] == f"gdino video: interrupted by {sig.name}", stderr
    assert set(messages(stderr)[:-1]) <= {swallowed}, stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"] and digest(clip) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_failure_of_ours_is_one_line_with_exit_1_and_says_what_the_outputs_hold(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, 12)
    video = tmp_path / "out.mp4"
    args = [str(clip), "--prompt", "a person .", "--output", str(video), "--jsonl", "/dev/full", "--overwrite"]
    code, stderr = run_all([*args, *TINY_MODEL])[0]
    assert code == 1, stderr
    assert messages(stderr)[-1] == ("gdino video: internal error: OSError: [Errno 28] No space left on device "
                                    "(run with -v for the traceback)")
    held = len(decoded_times(video))
    assert f"stopped by OSError: {video} holds frames 0 to {held - 1}, /dev/full no frame" in stderr
    video.unlink()
    assert main(["-v", "video", *args, *TINY_MODEL]) == 1
    assert "Traceback" in capsys.readouterr().err
