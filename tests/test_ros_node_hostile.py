"""The detector node on hostile input, over real DDS on loopback (``random:tiny`` weights).

Each bad frame is published while the node is busy with a valid frame of a holding camera, followed at
once by a valid frame of another camera, so it waits and goes through the node together with valid
frames: every valid frame must be answered, the bad one must not be published (or, when the detector
does take it, answered like any frame), and health must count it by kind.
"""
from __future__ import annotations

import signal
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from nodes.health import BatchRecord, Health, stamp_in_sync, summary_line

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by scripts/install_ros.sh")
from detector_node_harness import TINY_NODE_PARAMETERS, frame, image_msg, running_node  # noqa: E402
from ros_harness import NodeProcess, wait_for  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from nodes.loopback import isolated_ros_environment  # noqa: E402

RAW, COMPRESSED, GOOD = "/bad/image_raw", "/bad_c/image_raw/compressed", "/good/image_raw"
HOLD, FAR = "/hold/image_raw/compressed", "/far/image_raw"
CAMERAS = (RAW, COMPRESSED, GOOD, HOLD, FAR)
PROMPT = "a person . a red mug ."
MAX_PIXELS = 3_000_000  # the node's max_image_pixels here; the holding frame is 1500 x 1500
RSS_GROWTH_LIMIT_KB = 100_000  # a decoded 12000 x 12000 image alone is 432 MB


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid black RGB PNG written row by row, so a bomb costs this process no memory."""
    compressor = zlib.compressobj(1)
    row = bytes(1 + 3 * width)  # filter type 0, then the pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


HOLD_PNG = png_of_zeros(1500, 1500)  # decoding and resizing it keeps the node busy for tens of ms


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    parameters = {**TINY_NODE_PARAMETERS, "max_image_pixels": str(MAX_PIXELS)}
    with running_node(tmp_path_factory.mktemp("ros_hostile"), CAMERAS, PROMPT, parameters, clock_stamps=True) as harness:
        yield harness


def fresh_health(harness) -> dict[str, str]:
    """A health report made after everything received so far was counted (the second one from now)."""
    return harness.latest_health(after=len(harness.diagnostics) + 1)


def send_with_valid_frames(harness, camera: str, bad) -> tuple[tuple[int, int], dict[str, str]]:
    """Publish a holding frame, then ``bad`` on ``camera`` and a valid frame of another camera at once (they
    wait together while the node works on the holding frame); wait for both valid frames' detections.
    Returns the bad frame's stamp and the health report after it."""
    hold = harness.publish_msg(HOLD, CompressedImage(format="png", data=HOLD_PNG))
    time.sleep(0.05)
    bad_stamp = harness.publish_msg(camera, bad)
    good = harness.publish(GOOD, seed=len(harness.replies[GOOD]))
    assert len(harness.wait_reply(GOOD, good).detections) == 4
    harness.wait_reply(HOLD, hold)
    return bad_stamp, fresh_health(harness)


def count(health: dict[str, str], key: str) -> int:
    return int(health.get(key, 0))


def raw_case(**change) -> Image:
    msg = image_msg(frame(1), compressed=False)
    for field, value in change.items():
        setattr(msg, field, value)
    return msg


def test_malformed_frames_cost_only_themselves_and_are_counted_by_kind(harness):
    good = image_msg(frame(1), compressed=False)
    jpeg = cv2.imencode(".jpg", frame(2))[1].tobytes()
    cases = [
        (RAW, "wrong_step", raw_case(step=10)),
        (RAW, "data_size", raw_case(data=bytes(good.data)[:-7])),
        (RAW, "unknown_encoding", raw_case(encoding="64FC1")),
        (COMPRESSED, "corrupt_compressed", CompressedImage(format="jpeg", data=jpeg[: len(jpeg) // 2])),
        # Over this node's max_image_pixels (2000 x 2000 = 4 MP): refused by its header.
        (COMPRESSED, "too_large", CompressedImage(format="png", data=png_of_zeros(2000, 2000))),
    ]
    before = fresh_health(harness)
    for camera, kind, bad in cases:
        stamp, health = send_with_valid_frames(harness, camera, bad)
        assert harness.reply(camera, stamp) is None, kind
        assert count(health, f"malformed[{kind}]") == count(before, f"malformed[{kind}]") + 1, kind
    assert count(health, "malformed") == count(before, "malformed") + len(cases)
    assert count(health, "lost_frames") == 0


def test_extreme_aspect_ratios_are_answered_or_refused_alone(harness):
    for height, width in ((1, 3000), (3000, 1)):
        before = fresh_health(harness)
        bad = image_msg(np.full((height, width, 3), 90, np.uint8), compressed=False)
        stamp, health = send_with_valid_frames(harness, RAW, bad)
        refused = count(health, "refused") - count(before, "refused")
        if refused:  # refused on its own: nothing published for it (an empty array would say "nothing there")
            assert refused == 1 and harness.reply(RAW, stamp) is None
            # Two passes at most (the holding frame's, then the others), so it shared one with a valid frame.
            assert count(health, "batches") - count(before, "batches") <= 2
        else:  # the detector takes it: answered like any frame
            harness.wait_reply(RAW, stamp)
        assert count(health, "lost_frames") == 0 and count(health, "failed_batches") == 0
    output = harness.node_process.output()
    assert output.count("the detector refused") == len({k for k in health if k.startswith("refused[")})


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def test_a_png_bomb_is_refused_by_its_header_without_memory_growth(harness):
    bomb = CompressedImage(format="png", data=png_of_zeros(12000, 12000))
    send_with_valid_frames(harness, COMPRESSED, CompressedImage(format="png", data=HOLD_PNG))  # warm up
    peak_before = peak_rss_kb(harness.node_process.process.pid)
    before = fresh_health(harness)
    stamp, health = send_with_valid_frames(harness, COMPRESSED, bomb)
    growth = peak_rss_kb(harness.node_process.process.pid) - peak_before
    assert growth < RSS_GROWTH_LIMIT_KB, f"peak RSS grew by {growth} kB"
    assert harness.reply(COMPRESSED, stamp) is None
    assert count(health, "malformed[too_large]") == count(before, "malformed[too_large]") + 1


def test_a_camera_on_another_clock_does_not_poison_end_to_end_latency(harness):
    for seed in range(3):
        harness.exchange(GOOD, seed)
    now = time.time_ns() // 10**9
    # A driver's own monotonic clock, sim time started at 0, a clock an hour ahead.
    for sec in (12345, 5, now + 3600):
        harness.wait_reply(FAR, harness.publish_msg(FAR, image_msg(frame(3), compressed=False), stamp=(sec, 0)))
    health = fresh_health(harness)
    assert count(health, f"unsynced_stamps[{FAR}]") == 3 and count(health, f"unsynced_stamps[{GOOD}]") == 0
    # Each of those stamps is an hour or more off; true latencies here are seconds at most, even on a busy machine.
    assert float(health["end_to_end_ms_p95"]) < 60_000
    output = harness.node_process.output()
    assert output.count(f"stamps of {FAR} are") == 1 and f"stamps of {GOOD}" not in output


def test_a_refused_prompt_is_reported_and_the_prompt_in_force_stays(harness):
    in_force = [c.class_name for c in harness.phrases[-1].class_map]
    published = len(harness.phrases)
    harness.prompt_publisher.publish(String(data="a cat . a \x07dog ."))  # a control character
    refusal = "ignored prompt 'a cat . a \\x07dog .': prompt has a control character"
    wait_for(lambda: refusal in harness.node_process.output(), 10, "the refusal in the log", harness.node_process)
    assert f"the prompt stays {PROMPT!r}" in harness.node_process.output()
    ok, reason = harness.set_parameter("prompt", "a \x1bcat .")
    assert not ok and "control character" in reason
    reply = harness.exchange(GOOD, seed=9)
    assert {d.results[0].hypothesis.class_id for d in reply.detections} <= set(in_force)
    # Nothing new on the latched ~/phrases: late joiners still get the prompt in force.
    assert len(harness.phrases) == published and in_force == ["a person", "a red mug"]


def test_a_start_prompt_that_names_nothing_stops_the_node_with_a_clear_error(tmp_path, monkeypatch):
    for name, value in isolated_ros_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    args = ["-p", "model:=random:tiny", "-p", "prompt:= . "]
    process = NodeProcess("nodes.detector_node", args, tmp_path / "node.log")
    try:
        wait_for(lambda: not process.running(), 120, "the node to refuse its prompt")
    finally:
        code = process.stop(signal.SIGKILL)
    assert code == 2 and "the prompt parameter is refused: prompt '.' names nothing" in process.output(), \
        process.output()[-3000:]


def test_stamp_rule_and_refusal_and_failure_counts():
    assert stamp_in_sync(0.02) and stamp_in_sync(-0.5) and stamp_in_sync(9.0)
    assert not stamp_in_sync(-5.0) and not stamp_in_sync(1.7e9) and not stamp_in_sync(-3600.0)
    health = Health()
    health.record_batch(BatchRecord(2, busy_seconds=1.0, model_seconds=0.9, end_to_end_seconds=(0.1, 0.3)))
    assert health.record_unsynced_stamp("/far") and not health.record_unsynced_stamp("/far")
    assert health.record_refused("RuntimeError") and not health.record_refused("RuntimeError")
    assert health.record_failed_batch(lost_frames=2, answered_frames=1) == 1
    figures = health.snapshot(received=8, dropped=1, largest_backlog=2)
    assert (figures["processed"], figures["refused"], figures["refused[RuntimeError]"]) == (3, 2, 2)
    assert (figures["failed_batches"], figures["lost_frames"], figures["unsynced_stamps[/far]"]) == (1, 2, 2)
    line = summary_line(figures)
    assert "refused 2, lost 2 (failed batches 1)" in line and "(unsynced stamps 2)" in line
