"""The video-source node in its own process: every frame of a file, in order, at the file's rate."""
from __future__ import annotations

import signal
import time

import av
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_harness import NodeProcess, ros_session, wait_for  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from nodes.spinning import BackgroundNode as Listener  # noqa: E402
from perception.camera_messages import image_to_rgb  # noqa: E402

FRAMES, FPS, HEIGHT, WIDTH = 12, 20, 48, 64


def write_video(path) -> None:
    """Frame i is flat grey level 20 * i, so the order is readable after lossy coding."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(FRAMES):
            image = np.full((HEIGHT, WIDTH, 3), 20 * index, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture()
def ros(tmp_path):
    with ros_session(tmp_path):
        listener = Listener("video_listener")
        try:
            yield listener
        finally:
            listener.close()


def test_every_frame_is_published_in_order_at_the_file_rate_then_the_node_exits(ros, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video)
    received = []
    ros.node.create_subscription(
        Image, "/camera/image_raw", lambda msg: received.append((time.monotonic(), msg)),
        QoSProfile(depth=FRAMES, reliability=ReliabilityPolicy.RELIABLE),
    )
    node = NodeProcess(
        "nodes.video_source_node",
        ["-p", f"path:={video}", "-p", "qos_overrides./camera/image_raw.publisher.reliability:=reliable"],
        tmp_path / "video.log",
    )
    # The node exits by itself after the last frame; wait for that before checking.
    wait_for(lambda: not node.running(), 60, "the end of the file")
    assert node.stop() == 0, node.output()
    assert f"after {FRAMES} frames" in node.output()
    # The node waits for a subscriber (wait_for_subscriber defaults to true), so nothing is missed.
    levels = [int(np.median(image_to_rgb(msg))) for _, msg in received]
    assert np.abs(np.array(levels) - [20 * index for index in range(FRAMES)]).max() <= 6
    assert all(msg.width == WIDTH and msg.height == HEIGHT and msg.encoding == "rgb8" for _, msg in received)
    intervals = np.diff([arrival for arrival, _ in received])
    assert np.median(intervals) == pytest.approx(1 / FPS, abs=0.015)


def test_a_missing_file_is_one_clear_error(ros, tmp_path):
    node = NodeProcess("nodes.video_source_node", ["-p", f"path:={tmp_path / 'none.mp4'}"], tmp_path / "missing.log")
    wait_for(lambda: not node.running(), 60, "the node to give up")
    assert node.stop() == 2
    assert "none.mp4" in node.output() and "Traceback" not in node.output()


def test_looping_replays_the_file_until_sigterm_then_exits_cleanly(ros, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video)
    received = []
    ros.node.create_subscription(Image, "/camera/image_raw", received.append,
                                 QoSProfile(depth=FRAMES, reliability=ReliabilityPolicy.RELIABLE))
    node = NodeProcess(
        "nodes.video_source_node",
        ["-p", f"path:={video}", "-p", "loop:=true", "-p", "rate:=4.0",
         "-p", "qos_overrides./camera/image_raw.publisher.reliability:=reliable"],
        tmp_path / "loop.log",
    )
    wait_for(lambda: len(received) > 2 * FRAMES, 60, "a second pass over the file", node)
    assert node.stop(signal.SIGTERM) == 0, node.output()
    assert "terminate called" not in node.output()
