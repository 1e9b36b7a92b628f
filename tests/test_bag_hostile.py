"""`gdino bag` on real recordings and hostile input, with bags written here by rosbags and by the mcap
package (which, like `ros2 bag record`, writes zstd chunks with CRCs): image_transport's raw and
compressed pair, damaged files (cut short, noise, empty), a bare .mcap, images nothing can use, frames
the detector refuses, interruption and a killed run. The model is random:tiny: what is checked is what the
command promises about its output bag, its report and its exit code, not what is detected."""
from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.writer import Writer as McapWriter
from rosbags.rosbag2 import StoragePlugin, Writer
from test_ros_bag import MODEL_ARGS, frame, header, read_bag

from perception.bags.messages import bag_typestore
from perception.bags.output import BagOutput, OutputPathError, partial_path
from perception.camera_messages import rgb8_fields
from perception.cli.main import main

GDINO = str(Path(sys.executable).parent / "gdino")
IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
TYPESTORE = bag_typestore()
FRAMES = 40  # in the bag a run is interrupted in


def image_bytes(index: int, frame_id: str = "cam", rgb: np.ndarray | None = None) -> bytes:
    msg = TYPESTORE.types[IMAGE](header=header(TYPESTORE, index, frame_id), **rgb8_fields(frame(index) if rgb is None else rgb))
    return bytes(TYPESTORE.serialize_cdr(msg, IMAGE))


def png_bytes(index: int, frame_id: str = "cam") -> bytes:
    png = np.frombuffer(cv2.imencode(".png", frame(index)[:, :, ::-1])[1].tobytes(), np.uint8)
    msg = TYPESTORE.types[COMPRESSED](header=header(TYPESTORE, index, frame_id), format="png", data=png)
    return bytes(TYPESTORE.serialize_cdr(msg, COMPRESSED))


def write_bag(path: Path, messages: list[tuple[str, str, int, bytes]]) -> None:
    """A rosbag2 folder (mcap storage, written by rosbags) of (topic, type, timestamp, CDR bytes)."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, msgtype, timestamp, data in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            writer.write(connections[topic], timestamp, data)


def write_recorded_bag(folder: Path, frames: int) -> Path:
    """A bag folder whose .mcap is written as `ros2 bag record` writes it (zstd chunks with CRCs, summary,
    statistics; rosbags writes neither compression nor CRCs), beside rosbags' metadata.yaml for the same
    messages. Random pixels keep each 9 KB frame from compressing: a chunk holds about two frames."""
    stamps = [10**9 * (100 + index) for index in range(frames)]
    rgbs = [np.random.default_rng(index).integers(0, 256, frame(0).shape, dtype=np.uint8) for index in range(frames)]
    write_bag(folder, [("/cam/image_raw", IMAGE, stamp, image_bytes(i, rgb=rgb)) for i, (stamp, rgb) in enumerate(zip(stamps, rgbs))])
    mcap_file = next(folder.glob("*.mcap"))
    with mcap_file.open("wb") as file:
        writer = McapWriter(file, chunk_size=20_000)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(IMAGE, "ros2msg", TYPESTORE.generate_msgdef(IMAGE, ros_version=2)[0].encode())
        channel = writer.register_channel("/cam/image_raw", "cdr", schema)
        for index, (stamp, rgb) in enumerate(zip(stamps, rgbs)):
            writer.add_message(channel, log_time=stamp, data=image_bytes(index, rgb=rgb), publish_time=stamp)
        writer.finish()
    return mcap_file


def run_bag(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["bag", *args, "--prompt", "a red box .", *MODEL_ARGS])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_image_transport_pair_reads_one_source_per_camera(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="perception.bags")
    stamps = [10**9 * (100 + index) for index in range(4)]
    write_bag(tmp_path / "in", [message for index, stamp in enumerate(stamps) for message in (
        ("/cam/image_raw", IMAGE, stamp, image_bytes(index)),
        ("/cam/image_raw/compressed", COMPRESSED, stamp + 5, png_bytes(index)))])
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "raw"), "--json"], capsys)
    assert code == 0 and json.loads(out)["cameras"] == ["/cam/image_raw"]
    assert "reading /cam/image_raw (raw is lossless" in caplog.text
    assert [timestamp for timestamp, _, _ in read_bag(tmp_path / "raw")["/cam/detections"]] == stamps

    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "png"), "--source", "compressed"], capsys)
    assert code == 0
    assert [timestamp for timestamp, _, _ in read_bag(tmp_path / "png")["/cam/detections"]] == [s + 5 for s in stamps]

    code, _, err = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "both"), "--topics", "/cam/image_raw",
                            "/cam/image_raw/compressed"], capsys)
    assert code == 2 and "are one camera" in err and not (tmp_path / "both").exists()


def test_bag_cut_at_60_percent_processes_what_is_readable(tmp_path, capsys):
    # 15 frames of 230 KB: rosbags closes a chunk past 1 MB, so the file holds 3 chunks of 5 frames
    large = np.full((240, 320, 3), 90, np.uint8)
    write_bag(tmp_path / "in", [("/cam/image_raw", IMAGE, 10**9 * (100 + i), image_bytes(i, rgb=large)) for i in range(15)])
    mcap_file = next((tmp_path / "in").glob("*.mcap"))
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) * 6 // 10])
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--json"], capsys)
    summary = json.loads(out)
    assert code == 3
    written = summary["frames"]["/cam/image_raw"]
    assert written == 5 and len(read_bag(tmp_path / "out")["/cam/detections"]) == written
    # metadata.yaml says how many there were, so the loss is counted
    assert summary["damage"]["messages_read"] == written and summary["damage"]["messages_lost"] == 15 - written
    assert "unreadable from byte" in summary["damage"]["stops"][0]


def test_noise_in_the_middle_costs_only_the_damaged_chunk(tmp_path, capsys):
    recording = write_recorded_bag(tmp_path / "in", 20)
    data = bytearray(recording.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 4096] = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    recording.write_bytes(bytes(data))
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--json"], capsys)
    damage = json.loads(out)["damage"]
    assert code == 3 and damage["skipped_chunks"] >= 1
    assert damage["messages_read"] + damage["messages_lost"] == 20 and 0 < damage["messages_lost"] <= 4
    assert len(read_bag(tmp_path / "out")["/cam/detections"]) == damage["messages_read"]


def test_empty_mcap_is_reported_as_damaged(tmp_path, capsys):
    (tmp_path / "empty.mcap").write_bytes(b"")
    code, _, err = run_bag([str(tmp_path / "empty.mcap"), "--output", str(tmp_path / "out")], capsys)
    assert code == 3 and "is damaged and no image topic could be read, nothing written" in err
    assert not (tmp_path / "out").exists()
    # The same file in a bag folder: metadata.yaml names the camera, so an empty output bag is written.
    write_bag(tmp_path / "in", [("/cam/image_raw", IMAGE, 10**9 * (100 + i), image_bytes(i)) for i in range(3)])
    next((tmp_path / "in").glob("*.mcap")).write_bytes(b"")
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out")], capsys)
    assert code == 3 and "0 of 3 messages read (3 lost)" in out and "no frame could be used" in out
    assert read_bag(tmp_path / "out") == {}


def test_bare_mcap_file_is_read(tmp_path, capsys, caplog):
    recording = write_recorded_bag(tmp_path / "in", 5)
    code, out, _ = run_bag([str(recording), "--output", str(tmp_path / "out"), "--json"], capsys)
    assert code == 0 and json.loads(out)["frames"] == {"/cam/image_raw": 5}
    records = read_bag(tmp_path / "out")["/cam/detections"]
    assert [timestamp for timestamp, _, _ in records] == [10**9 * (100 + i) for i in range(5)]
    # A recorder that was killed leaves its folder without metadata.yaml: its .mcap files are read.
    (tmp_path / "in" / "metadata.yaml").unlink()
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out2"), "--json"], capsys)
    assert code == 0 and json.loads(out)["frames"] == {"/cam/image_raw": 5} and "has no metadata.yaml" in caplog.text


def depth_message(index: int) -> tuple:
    depth = np.full((48, 64), 1000, np.uint16)
    fields = {"height": 48, "width": 64, "encoding": "16UC1", "is_bigendian": 0, "step": 128,
              "data": depth.view(np.uint8).reshape(-1)}
    msg = TYPESTORE.types[IMAGE](header=header(TYPESTORE, 0, "depth"), **fields)
    return ("/depth/image_raw", IMAGE, 10**9 * (100 + index) + 5, bytes(TYPESTORE.serialize_cdr(msg, IMAGE)))


def test_bag_of_depth_images_only_says_no_frame_could_be_used(tmp_path, capsys):
    write_bag(tmp_path / "in", [depth_message(i) for i in range(3)])
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out")], capsys)
    assert code == 3
    assert "{'/depth/image_raw': 3}" in out and "no frame could be used (3 image messages read)" in out
    # Named by the user, the depth topic's images are counted as unusable.
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out2"), "--topics", "/depth/image_raw"],
                           capsys)
    assert code == 3 and "{'depth': 3}" in out and "no frame could be used" in out


def test_an_rgbd_recording_is_read_for_its_colour_camera(tmp_path, capsys):
    """A colour camera beside its depth stream (the usual RGB-D bag): the depth topic is set aside, not damage."""
    messages = [("/cam/image_raw", IMAGE, 10**9 * (100 + i), image_bytes(i)) for i in range(3)]
    write_bag(tmp_path / "in", messages + [depth_message(i) for i in range(3)])
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["frames"] == {"/cam/image_raw": 3} and summary["malformed"] == {}
    assert summary["depth_set_aside"] == {"/depth/image_raw": 3}


def test_frame_the_detector_cannot_take_costs_only_itself(tmp_path, capsys):
    """A 2x3000 frame waits in one batch with frames of another camera: those are all answered, and the odd
    one is answered or counted as refused (never both, never a detections message for a refused frame)."""
    messages = [("/a/image_raw", IMAGE, 10**9 * (100 + i), image_bytes(i)) for i in range(2)]
    messages.append(("/b/image_raw", IMAGE, 10**9 * 101 + 1, image_bytes(0, rgb=np.full((2, 3000, 3), 90, np.uint8))))
    write_bag(tmp_path / "in", messages)
    code, out, _ = run_bag([str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--json"], capsys)
    summary = json.loads(out)
    written = read_bag(tmp_path / "out")
    assert len(written["/a/detections"]) == summary["frames"]["/a/image_raw"] == 2
    odd = len(written.get("/b/detections", []))
    assert odd == summary["frames"].get("/b/image_raw", 0)
    assert odd + sum(summary["refused"].values()) == 1 and code == (3 if summary["refused"] else 0)


def start_and_signal(tmp_path, sig: signal.Signals, output: Path) -> tuple[int, str]:
    """Run `gdino bag` in a process on 40 frames, annotated, and send ``sig`` once the first chunk of its
    output (1 MB: 5 annotated frames of 230 KB) is on disk."""
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    write_bag(tmp_path / "in", [("/cam/image_raw", IMAGE, 10**9 * 100 + i, image_bytes(i, rgb=rgb)) for i in range(FRAMES)])
    process = subprocess.Popen([GDINO, "bag", str(tmp_path / "in"), "--output", str(output), "--annotate",
                                "--prompt", "a red box .", *MODEL_ARGS, "--batch-size", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Where the output's .mcap is written (OUT.partial/OUT/), or was before OUT.partial existed (OUT/).
    places = [output.with_name(output.name + ".partial") / output.name / f"{output.name}.mcap", output / f"{output.name}.mcap"]
    deadline = time.monotonic() + 300
    while not any(place.exists() and place.stat().st_size > 2**20 for place in places):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no chunk written in 300 s"
        time.sleep(0.05)
    process.send_signal(sig)
    stderr = process.communicate(timeout=120)[1]
    return process.returncode, stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_a_finalized_bag(tmp_path, sig):
    output = tmp_path / "out"
    code, stderr = start_and_signal(tmp_path, sig, output)
    assert code == 130 and "Traceback" not in stderr and f"stopped by {sig.name} after" in stderr
    written = read_bag(output)  # readable: index and metadata.yaml are there
    count = len(written["/cam/detections"])
    assert 5 <= count < FRAMES and len(written["/cam/detections/image"]) == count
    assert [t for t, _, _ in written["/cam/detections"]] == [10**9 * 100 + i for i in range(count)]
    assert not output.with_name("out.partial").exists()


def test_killed_run_leaves_no_output_and_a_rerun_works(tmp_path, capsys, caplog):
    output = tmp_path / "out"
    code, _ = start_and_signal(tmp_path, signal.SIGKILL, output)
    assert code == -signal.SIGKILL
    assert not output.exists() and output.with_name("out.partial").is_dir()
    code, _, _ = run_bag([str(tmp_path / "in"), "--output", str(output), "--topics", "/cam/image_raw"], capsys)
    assert code == 0 and "left by a run that was killed" in caplog.text
    assert len(read_bag(output)["/cam/detections"]) == FRAMES and not output.with_name("out.partial").exists()


def test_output_is_finalized_when_the_run_fails(tmp_path):
    """An exception inside the run (a fault of ours) still leaves a complete bag, under its final name."""
    output = tmp_path / "out"
    with pytest.raises(RuntimeError, match="a fault in the middle"):
        with BagOutput(output, TYPESTORE, ["/cam/image_raw"]) as bag:
            bag.write("/cam/image_raw", 10**9 * 100, header(TYPESTORE, 0, "cam"), frame(0), [])
            raise RuntimeError("a fault in the middle of a run")
    assert [t for t, _, _ in read_bag(output)["/cam/detections"]] == [10**9 * 100]
    assert not partial_path(output).exists()


def test_output_in_use_by_another_run_is_refused(tmp_path):
    output = tmp_path / "out"
    with BagOutput(output, TYPESTORE, ["/cam/image_raw"]):
        with pytest.raises(OutputPathError, match="in use by another gdino bag"):
            with BagOutput(output, TYPESTORE, ["/cam/image_raw"]):
                pass
    assert read_bag(output) == {}  # the first run's bag, finalized, not touched by the second
