"""The detector node with the bundled model, over real DDS on loopback: frames of generated scenes with
known objects come back as detections with matching stamps and correct pixel boxes, and a prompt
published on the topic changes what is detected."""
from __future__ import annotations

import signal

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by scripts/install_ros.sh")
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_harness import NodeProcess, ros_session, wait_for  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from nodes.spinning import BackgroundNode as Listener  # noqa: E402
from perception.camera_messages import fill_image_msg  # noqa: E402
from perception.training.synthetic import generate_scene  # noqa: E402

CAMERA = "/cam/image_raw"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
SCENE_SEED = 1003  # held out from training; two single, fully visible objects of different phrases


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ros_bundled")
    with ros_session(tmp_path):
        listener = Listener("bundled_driver")
        replies: list[Detection2DArray] = []
        phrases: list[LabelInfo] = []
        node = listener.node
        node.create_subscription(Detection2DArray, "/cam/detections", replies.append, RELIABLE)
        node.create_subscription(LabelInfo, "/grounding_dino/phrases", phrases.append, LATCHED)
        images = node.create_publisher(Image, CAMERA, RELIABLE)
        prompts = node.create_publisher(String, "/grounding_dino/prompt", LATCHED)
        args = ["-p", f"cameras:=[{CAMERA}]", "-p", f"qos_overrides.{CAMERA}.subscription.reliability:=reliable",
                "-p", "tracking.initialization_delay:=0"]
        process = NodeProcess("nodes.detector_node", args, tmp_path / "node.log")
        try:
            yield listener, images, prompts, replies, phrases, process
        finally:
            code = process.stop(signal.SIGINT)
            listener.close()
    assert code == 0, process.output()[-3000:]


def test_known_objects_come_back_with_matching_stamps_and_pixel_boxes(ros):
    _, images, prompts, replies, phrases, process = ros
    scene = generate_scene(SCENE_SEED, (256, 256))
    objects = [obj for obj in scene.objects if obj.visibility > 0.9]
    first, second = sorted({obj.phrase for obj in objects})[:2]
    for stamp, phrase in enumerate((first, second), start=1):
        prompts.publish(String(data=f"{phrase} ."))
        wait_for(lambda: phrases and phrases[-1].class_map[0].class_name == phrase, 120, "the prompt", process)
        target = next(obj for obj in objects if obj.phrase == phrase)
        message = Image()
        fill_image_msg(message, np.ascontiguousarray(scene.image))
        message.header.stamp.sec, message.header.frame_id = stamp, CAMERA

        def answered():
            images.publish(message)  # until the node answers this stamp (it may still be starting)
            return any(r.header.stamp.sec == stamp for r in replies)

        wait_for(answered, 120, f"detections for stamp {stamp}", process)
        reply = next(r for r in replies if r.header.stamp.sec == stamp)
        assert reply.header.frame_id == CAMERA
        best = max(reply.detections, key=lambda d: d.results[0].hypothesis.score)
        assert best.results[0].hypothesis.class_id == phrase
        box = best.bbox
        xyxy = (box.center.position.x - box.size_x / 2, box.center.position.y - box.size_y / 2,
                box.center.position.x + box.size_x / 2, box.center.position.y + box.size_y / 2)
        assert iou(xyxy, target.box) > 0.7, (xyxy, target.box)
        assert best.id.isdigit()
