"""Publishes a video file as a camera: ``sensor_msgs/Image`` (rgb8) at the file's own frame rate,
optionally looping, for demos without hardware.

Frames are decoded with PyAV (:class:`perception.video.decode.VideoReader`) on a publishing thread and
released on the schedule of their presentation timestamps (scaled by ``rate``); each is stamped with the ROS clock when published,
as a camera driver would. Without ``loop`` the node shuts down after the last frame.
"""
from __future__ import annotations

import sys
import threading
import time

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from sensor_msgs.msg import Image

from nodes import spinning
from perception.camera_messages import fill_image_msg
from perception.video.decode import VideoReader


class VideoSourceNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__("video_source", **node_options)
        path = self.declare_parameter(
            "path", "", ParameterDescriptor(description="Video file to publish (any format FFmpeg reads).", read_only=True)
        ).value
        topic = self.declare_parameter(
            "topic", "/camera/image_raw", ParameterDescriptor(description="Image topic to publish on.", read_only=True)
        ).value
        self._frame_id = self.declare_parameter(
            "frame_id", "camera", ParameterDescriptor(description="header.frame_id of the images.", read_only=True)
        ).value
        self._loop = self.declare_parameter(
            "loop", False, ParameterDescriptor(description="Start again at the end instead of shutting down.", read_only=True)
        ).value
        self._rate = self.declare_parameter(
            "rate",
            1.0,
            ParameterDescriptor(
                description="Playback speed relative to the file's frame rate.",
                read_only=True,
                floating_point_range=[FloatingPointRange(from_value=0.01, to_value=100.0)],
            ),
        ).value
        self._wait_for_subscriber = self.declare_parameter(
            "wait_for_subscriber",
            True,
            ParameterDescriptor(description="Start only once something subscribes, so a slow-starting detector "
                                            "sees the video from its first frame.", read_only=True),
        ).value
        if not path:
            raise ValueError("parameter 'path' is required: the video file to publish")
        self._path = path
        self._reader = VideoReader(path)  # probes the file: a missing or unreadable one fails here
        self._publisher = self.create_publisher(
            Image, topic, qos_profile_sensor_data, qos_overriding_options=QoSOverridingOptions.with_default_policies()
        )
        self.published = 0
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish_all, name="video", daemon=True)
        self._thread.start()
        self.get_logger().info(f"publishing {self._path} on {topic}{' in a loop' if self._loop else ''}")

    def _publish_all(self) -> None:
        try:
            while self._wait_for_subscriber and self._publisher.get_subscription_count() == 0:
                if self._stop.wait(0.05):
                    return
            while not self._stop.is_set():
                self._publish_once()
                if not self._loop:
                    if not self._stop.is_set():
                        self.get_logger().info(f"end of {self._path} after {self.published} frames")
                    break
        finally:
            self.finished.set()

    def _publish_once(self) -> None:
        start, first_time = time.monotonic(), None
        for frame in self._reader:
            first_time = frame.time if first_time is None else first_time
            due = start + (frame.time - first_time) / self._rate
            # Event.wait doubles as an interruptible sleep until the frame's due time.
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            msg = Image()
            fill_image_msg(msg, frame.image)
            msg.header.frame_id = self._frame_id
            msg.header.stamp = self.get_clock().now().to_msg()
            self._publisher.publish(msg)
            self.published += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def main(args: list[str] | None = None) -> int:
    return spinning.run(VideoSourceNode, "video_source", args)


if __name__ == "__main__":
    sys.exit(main())
