"""3D detections from a registered depth image, over real DDS on loopback: the bundled model on a generated
RGB-D scene (objects at known 3D positions), colour + depth + CameraInfo in, Detection3DArray out."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by scripts/install_ros.sh")
from detector_node_harness import RELIABLE, image_msg, running_node  # noqa: E402
from ros_harness import wait_for  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

from nodes.depth_pairing import KEEP, DepthPairing  # noqa: E402
from perception.boxes import box_iou  # noqa: E402
from perception.camera_messages import BadStepError, DataSizeError, UnknownEncodingError, depth_image  # noqa: E402
from perception.training.rgbd import generate_rgbd_scene  # noqa: E402

COLOUR, DEPTH, INFO = "/rgbd/color/image_raw", "/rgbd/depth/image_raw", "/rgbd/color/camera_info"
SCENE_SEED = 1005  # held out from training; three fully visible objects of three phrases
MAX_RELATIVE_ERROR = 0.05  # of the object's distance: the 90th-percentile bound


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory):
    scene = generate_rgbd_scene(SCENE_SEED, (240, 320))
    prompt = " . ".join(sorted({obj.phrase for obj in scene.objects})) + " ."
    parameters = {
        "tracking.initialization_delay": "0",
        "depth.topics": f"{COLOUR}={DEPTH}",  # CameraInfo from the default <namespace>/camera_info
        "depth.wait": "0.3",
        "health_period": "0.3",
        **{f"qos_overrides.{topic}.subscription.reliability": "reliable" for topic in (DEPTH, INFO)},
    }
    with running_node(tmp_path_factory.mktemp("ros_depth"), (COLOUR,), prompt, parameters) as harness:
        node = harness.listener.node
        harness.depth_publisher = node.create_publisher(Image, DEPTH, RELIABLE)
        harness.info_publisher = node.create_publisher(CameraInfo, INFO, RELIABLE)
        harness.replies_3d = []
        node.create_subscription(Detection3DArray, "/rgbd/color/detections_3d", harness.replies_3d.append, RELIABLE)
        wait_for(lambda: harness.depth_publisher.get_subscription_count() and harness.info_publisher.get_subscription_count(),
                 30, "the node's depth subscriptions", harness.node_process)
        yield harness, scene


def depth_msg(scene, encoding: str) -> Image:
    depth = scene.depth_16uc1() if encoding == "16UC1" else scene.depth.astype(np.float32)
    return Image(height=depth.shape[0], width=depth.shape[1], encoding=encoding, is_bigendian=0,
                 step=depth.shape[1] * depth.itemsize, data=depth.tobytes())


def camera_info_msg(scene) -> CameraInfo:
    k = scene.intrinsics
    return CameraInfo(width=k.width, height=k.height, k=[k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0])


def send(harness, scene, sec: int, depth_encoding: str | None):
    """CameraInfo, the depth image (unless None) and the colour image, all stamped ``sec``."""
    info = camera_info_msg(scene)
    info.header.stamp.sec = sec
    harness.info_publisher.publish(info)
    if depth_encoding is not None:
        depth = depth_msg(scene, depth_encoding)
        depth.header.stamp.sec, depth.header.frame_id = sec, COLOUR
        harness.depth_publisher.publish(depth)
    return harness.publish_msg(COLOUR, image_msg(scene.image, compressed=False), stamp=(sec, 0))


def reply_3d(harness, stamp):
    return next((r for r in harness.replies_3d if (r.header.stamp.sec, r.header.stamp.nanosec) == stamp), None)


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_3d_boxes_carry_the_2d_ids_and_the_objects_true_positions(rgbd, encoding):
    harness, scene = rgbd
    sec = 10 if encoding == "32FC1" else 20
    stamp = send(harness, scene, sec, encoding)
    reply = harness.wait_reply(COLOUR, stamp)
    wait_for(lambda: reply_3d(harness, stamp) is not None, 30, "the 3D detections", harness.node_process)
    reply3d = reply_3d(harness, stamp)
    assert reply3d.header == reply.header and reply3d.header.frame_id == COLOUR
    by_id = {d.id: d for d in reply3d.detections}
    assert set(by_id) <= {d.id for d in reply.detections} and all(i.isdigit() for i in by_id)
    matched = 0
    for obj in scene.objects:
        candidates = [d for d in reply.detections if d.results[0].hypothesis.class_id == obj.phrase]
        boxes = torch.tensor([[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                               d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                              for d in candidates]).reshape(-1, 4)
        overlaps = box_iou(boxes, torch.tensor([obj.box])).flatten()
        if not len(candidates) or overlaps.max() < 0.7:
            continue
        detection = candidates[int(overlaps.argmax())]
        found = by_id[detection.id]
        assert found.results[0].hypothesis.class_id == obj.phrase
        position = found.bbox.center.position
        error = np.linalg.norm(np.array([position.x, position.y, position.z]) - obj.center)
        assert error <= MAX_RELATIVE_ERROR * np.linalg.norm(obj.center), (obj.phrase, error, obj.center)
        matched += 1
    assert matched >= 2, f"the model found {matched} of {len(scene.objects)} objects"


def test_a_frame_without_depth_is_published_in_2d_only_and_counted(rgbd):
    harness, scene = rgbd
    before = int(harness.latest_health().get("without_3d[unpaired]", 0))
    stamp = send(harness, scene, 30, depth_encoding=None)
    assert len(harness.wait_reply(COLOUR, stamp).detections) > 0
    health = harness.latest_health(after=len(harness.diagnostics) + 1)
    assert int(health["without_3d[unpaired]"]) == before + 1
    assert reply_3d(harness, stamp) is None
    assert harness.node_process.output().count("published in 2D only (unpaired)") == 1


def depth_at(sec: float, name: str = "") -> Image:
    msg = Image(encoding=name)
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(sec), round(sec % 1 * 1e9)
    return msg


def test_pairing_takes_the_nearest_stamp_within_the_slop_and_stops_waiting_when_none_can_come():
    pairing = DepthPairing(["/c"], slop=0.02, wait=5.0)
    for sec, name in ((1.00, "a"), (1.03, "b"), (1.05, "c")):
        pairing.add_depth("/c", depth_at(sec, name))
    now = time.monotonic()
    assert pairing.partner("/c", 1.045, now).encoding == "c"
    assert pairing.partner("/c", 1.012, now).encoding == "a"  # b is within the slop too, but farther
    assert pairing.partner("/c", 1.027, now).encoding == "b"
    start = time.monotonic()
    assert pairing.partner("/c", 0.5, now) is None  # later depths exist: no partner can come
    assert pairing.partner("/c", None, now) is None  # no stamp
    assert time.monotonic() - start < 1.0
    pairing.wait = 0.2
    assert pairing.partner("/c", 2.0, time.monotonic()) is None  # nothing later yet: waits, then gives up
    assert time.monotonic() - start >= 0.2


def test_a_frame_keeps_its_depth_partner_however_long_the_model_takes():
    pairing = DepthPairing(["/c"], slop=0.01, wait=5.0)
    # Depth first: the colour frame picks its partner on arrival, and keeps it while many newer depth
    # images (more than are kept) arrive during a slow model pass.
    pairing.add_depth("/c", depth_at(1.0, "first"))
    pairing.colour_arrived("/c", 1.0)
    pairing.claim("/c", 1.0)
    pairing.colour_arrived("/c", 1.5)  # the next frame waits in the slot meanwhile
    for index in range(3 * KEEP):
        pairing.add_depth("/c", depth_at(1.1 + index / 30))
    assert pairing.partner("/c", 1.0, time.monotonic()).encoding == "first"
    # Colour first: a depth image arriving later, even after the claim, still pairs.
    pairing.colour_arrived("/c", 10.0)
    pairing.claim("/c", 10.0)
    threading.Timer(0.1, lambda: pairing.add_depth("/c", depth_at(10.005, "late"))).start()
    assert pairing.partner("/c", 10.0, time.monotonic()).encoding == "late"


def test_depth_messages_are_read_in_either_byte_order_with_row_padding():
    millimetres = np.array([[0, 1000, 65535], [7, 300, 4096]], np.uint16)
    padded = np.zeros((2, 4), ">u2")  # rows of 3 pixels padded to 4 (8-byte step), big-endian
    padded[:, :3] = millimetres
    msg = Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=8, data=padded.tobytes())
    read = depth_image(msg)
    assert read.dtype == np.uint16 and read.dtype.isnative and np.array_equal(read, millimetres)
    metres = np.array([[0.5, np.nan, 2.25]], np.float32)
    assert np.array_equal(depth_image(Image(height=1, width=3, encoding="32FC1", step=12, data=metres.tobytes())),
                          metres, equal_nan=True)
    with pytest.raises(BadStepError):
        depth_image(Image(height=2, width=3, encoding="16UC1", step=4, data=bytes(8)))
    with pytest.raises(DataSizeError):
        depth_image(Image(height=2, width=3, encoding="16UC1", step=6, data=bytes(11)))
    with pytest.raises(UnknownEncodingError, match="16UC1, 32FC1"):
        depth_image(Image(height=1, width=1, encoding="mono16", step=2, data=bytes(2)))
