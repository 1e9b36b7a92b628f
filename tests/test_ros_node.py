"""The detector node in its own process, driven over real DDS on loopback from this process.

The model is ``random:tiny`` (random weights): these tests check plumbing (stamps, ids, labels from
the current prompt, batching, prompt handling, malformed input, shutdown), not what is detected.
"""
from __future__ import annotations

import signal

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by scripts/install_ros.sh")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_harness import NodeProcess, ros_session, wait_for  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from nodes.lifecycle import BackgroundNode as Listener  # noqa: E402
from perception.camera_messages import fill_image_msg  # noqa: E402

CAMERAS = ("/cam_a/image_raw", "/cam_b/image_raw", "/cam_c/image_raw/compressed")
FIRST_PROMPT = "a person . a red mug ."
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
HEIGHT, WIDTH = 96, 128
NODE_START_SECONDS = 120  # importing torch and building the model on a busy 2-core machine


def frame(seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    image = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    cv2.rectangle(image, (20, 20), (70, 80), tuple(int(v) for v in generator.integers(0, 255, 3)), -1)
    return image


class Harness:
    """The node process plus publishers and recorders in the test process."""

    def __init__(self, tmp_path) -> None:
        self.listener = Listener("test_driver")
        node = self.listener.node
        self.image_publishers = {
            camera: node.create_publisher(CompressedImage if camera.endswith("compressed") else Image, camera, RELIABLE)
            for camera in CAMERAS
        }
        self.prompt_publisher = node.create_publisher(String, "/grounding_dino/prompt", LATCHED)
        self.replies: dict[str, list[Detection2DArray]] = {camera: [] for camera in CAMERAS}
        for camera in CAMERAS:
            topic = camera.removesuffix("/compressed").rsplit("/", 1)[0] + "/detections"
            node.create_subscription(Detection2DArray, topic, self.replies[camera].append, RELIABLE)
        self.phrases: list[LabelInfo] = []
        node.create_subscription(LabelInfo, "/grounding_dino/phrases", self.phrases.append, LATCHED)
        self.diagnostics: list[dict[str, str]] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE)
        self.parameter_client = node.create_client(SetParameters, "/grounding_dino/set_parameters")
        self.tmp_path = tmp_path
        self.node_process: NodeProcess | None = None
        self._stamp = 0

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("grounding_dino"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def start_node(self) -> None:
        parameters = {
            "cameras": "[" + ",".join(CAMERAS) + "]",
            "model": "random:tiny",
            "box_threshold": "0.0",
            "text_threshold": "0.0",
            "max_detections": "4",
            "shortest_edge": "96",
            "longest_edge": "128",
            "health_period": "0.3",
            "tracking.initialization_delay": "0",
            # Camera-motion compensation on (nested parameters, each camera's frames to its tracker); the test
            # cameras do not move, so it must change no id.
            "tracking.motion.enabled": "true",
            "tracking.motion.model": "translation",
            # The test publishes images reliably; the node's sensor-data default would also match.
            **{f"qos_overrides.{camera}.subscription.reliability": "reliable" for camera in CAMERAS},
        }
        args = [item for name, value in parameters.items() for item in ("-p", f"{name}:={value}")]
        self.node_process = NodeProcess("nodes.detector_node", args, self.tmp_path / "node.log")
        wait_for(lambda: self.phrases, NODE_START_SECONDS, "the node's phrases", self.node_process)

    def publish(self, camera: str, seed: int, stamp_sec: int | None = None) -> tuple[int, int]:
        self._stamp += 1
        sec = self._stamp if stamp_sec is None else stamp_sec
        if camera.endswith("compressed"):
            msg = CompressedImage(format="png", data=cv2.imencode(".png", frame(seed)[:, :, ::-1])[1].tobytes())
        else:
            msg = Image()
            fill_image_msg(msg, frame(seed))
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 1000 + seed
        msg.header.frame_id = camera
        self.image_publishers[camera].publish(msg)
        return sec, 1000 + seed

    def exchange(self, camera: str, seed: int) -> Detection2DArray:
        """Publish one frame and wait for its detections (matched by stamp)."""
        sec, nanosec = self.publish(camera, seed)

        def answered():
            return any(r.header.stamp.sec == sec and r.header.stamp.nanosec == nanosec for r in self.replies[camera])

        wait_for(answered, 30, f"detections for {camera} stamp {sec}", self.node_process)
        return next(r for r in self.replies[camera] if r.header.stamp.sec == sec)

    def latest_health(self, after: int = 0) -> dict[str, str]:
        count = len(self.diagnostics)
        wait_for(lambda: len(self.diagnostics) > max(count, after), 10, "a health report", self.node_process)
        return self.diagnostics[-1]

    def set_parameter(self, name: str, value) -> tuple[bool, str]:
        if isinstance(value, float):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=parameter_value)])
        assert self.parameter_client.wait_for_service(timeout_sec=10)
        future = self.parameter_client.call_async(request)
        wait_for(future.done, 10, f"setting {name}", self.node_process)
        result = future.result().results[0]
        return result.successful, result.reason


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ros")
    with ros_session(tmp_path):
        harness = Harness(tmp_path)
        try:
            # Published before the node exists: the node must still get it (transient local).
            harness.prompt_publisher.publish(String(data=FIRST_PROMPT))
            harness.start_node()
            harness.startup_phrases = [c.class_name for c in harness.phrases[-1].class_map]
            yield harness
        finally:
            code = harness.node_process.stop(signal.SIGINT) if harness.node_process else 0
            harness.listener.close()
            output = harness.node_process.output() if harness.node_process else ""
    assert code == 0, output[-3000:]
    assert "terminate called" not in output


def test_a_late_joining_node_receives_the_prompt(harness):
    assert harness.startup_phrases == ["a person", "a red mug"]


def test_detections_keep_the_image_header_and_carry_phrases_pixel_boxes_and_track_ids(harness):
    replies = [harness.exchange("/cam_a/image_raw", seed=1) for _ in range(3)]
    for reply in replies:
        assert reply.header.frame_id == "/cam_a/image_raw"
        assert len(reply.detections) == 4
        for detection in reply.detections:
            assert detection.header == reply.header
            assert detection.results[0].hypothesis.class_id in ("a person", "a red mug")
            assert 0.0 <= detection.results[0].hypothesis.score <= 1.0
            box = detection.bbox
            # Inside the image up to float rounding: boxes clipped to the border have an edge at exactly 0.
            assert -1e-3 <= box.center.position.x - box.size_x / 2 and box.center.position.x + box.size_x / 2 <= WIDTH + 1e-3
            assert -1e-3 <= box.center.position.y - box.size_y / 2 and box.center.position.y + box.size_y / 2 <= HEIGHT + 1e-3
    # The same image three times: the tracker keeps every object's id.
    ids = [sorted(d.id for d in reply.detections) for reply in replies]
    assert all(ids) and ids[0] == ids[1] == ids[2] and all(i.isdigit() for i in ids[0])


def test_compressed_camera_is_decoded(harness):
    reply = harness.exchange("/cam_c/image_raw/compressed", seed=2)
    assert len(reply.detections) == 4 and reply.header.frame_id == "/cam_c/image_raw/compressed"


def test_frames_of_two_cameras_that_wait_together_go_through_the_model_as_one_batch(harness):
    for round_index in range(6):
        harness.publish("/cam_a/image_raw", seed=10 + round_index)
        harness.publish("/cam_b/image_raw", seed=20 + round_index)
    wait_for(lambda: len(harness.replies["/cam_b/image_raw"]) >= 1, 30, "detections of camera b", harness.node_process)
    health = harness.latest_health()
    assert int(health["largest_batch"]) == 2
    assert int(health["processed"]) + int(health["dropped"]) >= 12


def test_prompt_topic_changes_labels_and_text_is_encoded_once_per_prompt(harness):
    before = int(harness.latest_health()["text_encoder_calls"])
    harness.prompt_publisher.publish(String(data="a cat ."))
    wait_for(lambda: harness.phrases[-1].class_map[0].class_name == "a cat", 20, "the new phrases", harness.node_process)
    reply = harness.exchange("/cam_a/image_raw", seed=3)
    assert {d.results[0].hypothesis.class_id for d in reply.detections} == {"a cat"}
    after_change = int(harness.latest_health()["text_encoder_calls"])
    assert after_change == before + 1
    # The same prompt again, and a frame through: no new text encoding.
    harness.prompt_publisher.publish(String(data="a cat ."))
    harness.exchange("/cam_a/image_raw", seed=4)
    assert int(harness.latest_health()["text_encoder_calls"]) == after_change


def test_runtime_parameters_change_thresholds_and_reject_bad_values(harness):
    assert harness.set_parameter("box_threshold", 1.0) == (True, "")
    assert len(harness.exchange("/cam_a/image_raw", seed=5).detections) == 0
    assert harness.set_parameter("box_threshold", 0.0)[0]
    assert len(harness.exchange("/cam_a/image_raw", seed=5).detections) == 4
    ok, reason = harness.set_parameter("prompt", " . ")
    assert not ok and "names nothing" in reason
    ok, reason = harness.set_parameter("box_threshold", 1.5)
    assert not ok
    ok, _ = harness.set_parameter("model", "elsewhere")
    assert not ok  # start-time parameters are read-only


def test_malformed_messages_are_logged_once_per_kind_and_skipped(harness):
    good = Image()
    fill_image_msg(good, frame(6))
    cases = {
        "wrong_step": dict(step=10),
        "unknown_encoding": dict(encoding="32FC1"),
        "data_size": dict(data=bytes(100)),
        "zero_size": dict(width=0, height=0, step=0, data=b""),
    }
    for _ in range(2):
        for change in cases.values():
            bad = Image(height=good.height, width=good.width, encoding=good.encoding, step=good.step, data=good.data)
            for field, value in change.items():
                setattr(bad, field, value)
            harness.image_publishers["/cam_a/image_raw"].publish(bad)
            harness.exchange("/cam_b/image_raw", seed=7)  # paces the bad frames so none is dropped
        harness.image_publishers["/cam_c/image_raw/compressed"].publish(CompressedImage(format="jpeg", data=b"\xff\xd8junk"))
        harness.exchange("/cam_b/image_raw", seed=7)
    # Still serving every camera.
    assert len(harness.exchange("/cam_a/image_raw", seed=8).detections) == 4
    assert int(harness.latest_health()["malformed"]) == 10
    output = harness.node_process.output()
    for kind in [*cases, "corrupt_compressed"]:
        assert output.count(f"({kind})") == 1, kind
