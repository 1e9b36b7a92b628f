"""The detector node in its own process with ``random:tiny`` weights, driven over real DDS on loopback
from this process: publishers per camera and for the prompt, recorders of detections, phrases and
/diagnostics, and the parameter service. Shared by the node's test modules."""
from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import NodeProcess, ros_session, wait_for
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, LabelInfo

from nodes.spinning import BackgroundNode as Listener
from perception.camera_messages import detections_topic, fill_image_msg, is_compressed

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
HEIGHT, WIDTH = 96, 128
NODE_START_SECONDS = 120  # importing torch and building the model on a busy 2-core machine
# The tiny random model on small images: these parameters make every frame come back with 4 boxes.
TINY_NODE_PARAMETERS = {
    "model": "random:tiny",
    "box_threshold": "0.0",
    "text_threshold": "0.0",
    "max_detections": "4",
    "shortest_edge": "96",
    "longest_edge": "128",
    "health_period": "0.3",
    "tracking.initialization_delay": "0",
    # box_threshold alone decides what is published: with the tracker's default continue_threshold (0.25) a
    # box scored below box_threshold still continues a live track, so box_threshold 1.0 would not empty a frame.
    "tracking.continue_threshold": "0.0",
    # Random weights draw unrelated boxes on every frame, and two of one phrase may overlap by chance: a box
    # overlapping a better one (duplicate_iou) or the only track of its phrase, matched by another box
    # (new_track_iou), would then start no track and the frame publish 3 of its 4 boxes. These tests are about
    # the node, not those rules (tests/test_tracking.py has them), so the tracker keeps every box.
    "tracking.duplicate_iou": "1.0",
    "tracking.new_track_iou": "1.0",
}


def frame(seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    image = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    cv2.rectangle(image, (20, 20), (70, 80), tuple(int(v) for v in generator.integers(0, 255, 3)), -1)
    return image


def image_msg(rgb: np.ndarray, compressed: bool) -> Image | CompressedImage:
    if compressed:
        return CompressedImage(format="png", data=cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes())
    msg = Image()
    fill_image_msg(msg, rgb)
    return msg


class Harness:
    """The node process plus publishers and recorders in the test process. ``clock_stamps``: frames are
    stamped with this machine's clock (the node's too), else with small counters (1, 2, ... s)."""

    def __init__(self, tmp_path, cameras: tuple[str, ...], clock_stamps: bool = False) -> None:
        self.cameras = cameras
        self.clock_stamps = clock_stamps
        self.listener = Listener("test_driver")
        node = self.listener.node
        self.image_publishers = {
            camera: node.create_publisher(CompressedImage if is_compressed(camera) else Image, camera, RELIABLE)
            for camera in cameras
        }
        self.prompt_publisher = node.create_publisher(String, "/grounding_dino/prompt", LATCHED)
        self.replies: dict[str, list[Detection2DArray]] = {camera: [] for camera in cameras}
        for camera in cameras:
            node.create_subscription(Detection2DArray, detections_topic(camera), self.replies[camera].append, RELIABLE)
        self.phrases: list[LabelInfo] = []
        node.create_subscription(LabelInfo, "/grounding_dino/phrases", self.phrases.append, LATCHED)
        self.diagnostics: list[dict[str, str]] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE)
        self.parameter_client = node.create_client(SetParameters, "/grounding_dino/set_parameters")
        self.get_parameters_client = node.create_client(GetParameters, "/grounding_dino/get_parameters")
        self.change_state_client = node.create_client(ChangeState, "/grounding_dino/change_state")
        self.get_state_client = node.create_client(GetState, "/grounding_dino/get_state")
        self.tmp_path = tmp_path
        self.node_process: NodeProcess | None = None
        self._stamp = 0

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("grounding_dino"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def start_node(self, parameters: dict[str, str], wait_for_phrases: bool = True) -> None:
        """Start the node with ``cameras`` and ``parameters``, and wait for its first phrases (with
        ``wait_for_phrases``; else for its lifecycle services)."""
        parameters = {
            "cameras": "[" + ",".join(self.cameras) + "]",
            # The test publishes images reliably; the node's sensor-data default would also match.
            **{f"qos_overrides.{camera}.subscription.reliability": "reliable" for camera in self.cameras},
            **parameters,
        }
        args = [item for name, value in parameters.items() for item in ("-p", f"{name}:={value}")]
        self.node_process = NodeProcess("nodes.detector_node", args, self.tmp_path / "node.log")
        if wait_for_phrases:
            wait_for(lambda: self.phrases, NODE_START_SECONDS, "the node's phrases", self.node_process)
        else:
            wait_for(self.get_state_client.service_is_ready, NODE_START_SECONDS, "the lifecycle services",
                     self.node_process)

    def publish_msg(self, camera: str, msg, stamp: tuple[int, int] | None = None) -> tuple[int, int]:
        """Stamp ``msg`` (``stamp``, else a new one), name the camera as its frame, publish; returns the stamp."""
        if stamp is not None:
            sec, nanosec = stamp
        elif self.clock_stamps:
            sec, nanosec = divmod(time.time_ns(), 10**9)
        else:
            self._stamp += 1
            sec, nanosec = self._stamp, 1000
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
        msg.header.frame_id = camera
        self.image_publishers[camera].publish(msg)
        return sec, nanosec

    def publish(self, camera: str, seed: int) -> tuple[int, int]:
        return self.publish_msg(camera, image_msg(frame(seed), is_compressed(camera)))

    def reply(self, camera: str, stamp: tuple[int, int]) -> Detection2DArray | None:
        return next((r for r in self.replies[camera] if (r.header.stamp.sec, r.header.stamp.nanosec) == stamp), None)

    def wait_reply(self, camera: str, stamp: tuple[int, int]) -> Detection2DArray:
        wait_for(lambda: self.reply(camera, stamp) is not None, 30, f"detections for {camera} stamp {stamp}",
                 self.node_process)
        return self.reply(camera, stamp)

    def exchange(self, camera: str, seed: int) -> Detection2DArray:
        """Publish one frame and wait for its detections (matched by stamp)."""
        return self.wait_reply(camera, self.publish(camera, seed))

    def latest_health(self, after: int = 0) -> dict[str, str]:
        count = len(self.diagnostics)
        wait_for(lambda: len(self.diagnostics) > max(count, after), 10, "a health report", self.node_process)
        return self.diagnostics[-1]

    def _call(self, client, request, what: str, timeout: float = 10, resend_every: float | None = None):
        """The service's answer to ``request``. resend_every (for requests that may be repeated): send it again
        after this many seconds without an answer. A server whose response writer has not yet matched this
        client's reader drops its answer (Fast DDS: "failed to send response (timeout): client will not receive
        response"; seen once, on Kilted, for the first GetState after a node started); a request sent later
        is answered. Any answer to any of the copies is returned."""
        assert client.wait_for_service(timeout_sec=10), what
        deadline, futures = time.monotonic() + timeout, []
        try:
            while True:
                futures.append(client.call_async(request))
                remaining = deadline - time.monotonic()
                wait = remaining if resend_every is None else min(resend_every, remaining)
                try:
                    wait_for(lambda: any(future.done() for future in futures), max(wait, 0.0), what, self.node_process)
                    return next(future for future in futures if future.done()).result()
                except AssertionError:
                    if time.monotonic() >= deadline or not self.node_process.running():
                        raise
        finally:
            for future in futures:
                if not future.done():
                    client.remove_pending_request(future)

    def change_state(self, transition_id: int) -> bool:
        """Request a lifecycle transition (a lifecycle_msgs/Transition id); whether it succeeded."""
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self._call(self.change_state_client, request, f"transition {transition_id}", NODE_START_SECONDS).success

    def state(self) -> str:
        """The node's lifecycle state label: unconfigured, inactive, active, finalized."""
        return self._call(self.get_state_client, GetState.Request(), "the lifecycle state",
                          resend_every=2.0).current_state.label

    def get_parameters(self, *names: str) -> dict:
        """The node's values of parameters ``names`` (doubles, strings and booleans)."""
        answer = self._call(self.get_parameters_client, GetParameters.Request(names=list(names)), "the parameters",
                            resend_every=2.0)
        kinds = {ParameterType.PARAMETER_DOUBLE: "double_value", ParameterType.PARAMETER_STRING: "string_value",
                 ParameterType.PARAMETER_BOOL: "bool_value"}
        return {name: getattr(value, kinds[value.type]) for name, value in zip(names, answer.values)}

    def set_parameter(self, name: str, value) -> tuple[bool, str]:
        if isinstance(value, bool):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        elif isinstance(value, float):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=parameter_value)])
        result = self._call(self.parameter_client, request, f"setting {name}", resend_every=2.0).results[0]
        return result.successful, result.reason


@contextmanager
def running_node(tmp_path, cameras: tuple[str, ...], prompt: str, parameters: dict[str, str],
                 clock_stamps: bool = False) -> Iterator[Harness]:
    """The node on an isolated graph, ``prompt`` published before it starts (latched: it must still get
    it). Afterwards the node is stopped with SIGINT and must have exited cleanly: code 0, no traceback, no
    failed batch."""
    with ros_session(tmp_path):
        harness = Harness(tmp_path, cameras, clock_stamps)
        try:
            harness.prompt_publisher.publish(String(data=prompt))
            harness.start_node(parameters, wait_for_phrases=parameters.get("autostart", "true") == "true")
            yield harness
        finally:
            code = harness.node_process.stop(signal.SIGINT) if harness.node_process else 0
            harness.listener.close()
            output = harness.node_process.output() if harness.node_process else ""
    assert code == 0, output[-3000:]
    for sign in ("terminate called", "Traceback", "inference failed"):
        assert sign not in output, output[-3000:]
