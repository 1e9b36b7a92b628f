"""The detector node: camera topics and a prompt in, tracked ``vision_msgs/Detection2DArray`` out, as a
managed lifecycle node (``rclpy.lifecycle``, driven through the standard ``lifecycle_msgs`` services).

- configure: checks the parameters, loads the model and tokenizer, checks the prompt, creates the lifecycle
  publishers; any failure is logged with its reason and the node stays unconfigured.
- activate: subscribes to the cameras and starts the inference thread (:mod:`nodes.inference`).
- deactivate: unsubscribes and stops the thread after its batch; the model stays loaded.
- cleanup: frees the model (and the CUDA cache when on a GPU) and hands the freed heap back to the system, so
  a cleaned-up node is as small as before configure (measured in tests/test_ros_lifecycle.py).
- shutdown: from any state, then ``main`` exits.
- ``autostart`` (default true): ``main`` configures and activates at once, so plain command lines and launch
  files work without a lifecycle manager; a failed configure then stops the process with exit code 2.

Topics (names relative to the node, remappable): ``~/prompt`` (std_msgs/String in, reliable, transient
local; accepted in every state), the prompt's phrases as vision_msgs/LabelInfo (latched: transient local) on
``~/phrases`` and, as vision_msgs asks (beside the detections, like CameraInfo beside an image), on
``<namespace>/label_info`` per camera; per camera ``<namespace>/detections`` and optionally
``<namespace>/detections/image``; ``/diagnostics``. A camera with
a registered depth image (``depth.*`` parameters) also gets ``<namespace>/detections_3d``
(vision_msgs/Detection3DArray in the colour image's optical frame, ids and classes as in 2D; see
:mod:`nodes.spatial_detections`).
"""
from __future__ import annotations

import ctypes
import gc
import sys
import threading

import torch
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo

from nodes import parameters, spinning
from nodes.depth_pairing import DepthPairing
from nodes.diagnostics import DiagnosticsPublisher
from nodes.health import summary_line
from nodes.inference import InferenceLoop, Outputs
from nodes.spatial_detections import SpatialDetections
from perception.camera_messages import detections_topic, is_compressed, stamp_seconds
from perception.detector import GroundingDinoDetector
from perception.streams import MultiStreamDetector
from perception.weights import WeightsError, listed, tuned_settings

NODE_NAME = "grounding_dino"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class DetectorNode(LifecycleNode):
    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        for spec in parameters.SPECS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self.finished = threading.Event()  # set by the shutdown transition: the spin loop ends
        self.last_failure: str | None = None  # why the last configure failed
        self._values: dict | None = None  # the parameters read at configure
        self._model_settings_set: dict = {}  # parameters the model's tuned settings set at the last configure
        self._depth_cameras: dict[str, parameters.DepthCamera] = {}
        self._loop: InferenceLoop | None = None  # from configure to cleanup
        self._said_no_trim = False
        self._publishers_made: list = []
        self._health_timer = None
        self._camera_subscriptions: list = []
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_subscription(String, "~/prompt", self._on_prompt_msg, LATCHED)
        self._diagnostics = DiagnosticsPublisher(self)

    @property
    def detector(self) -> GroundingDinoDetector | None:
        """The loaded detector, None while unconfigured."""
        return self._loop.pipeline.detector if self._loop is not None else None

    # Transitions, on the executor's thread.
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = {spec.name: self.get_parameter(spec.name).value for spec in parameters.SPECS}
        try:
            values = self._apply_model_settings(values)
            self._loop = self._load(values)
        except Exception as error:  # noqa: BLE001 - whatever stops loading, the node stays unconfigured and says why
            self.last_failure = str(error) if isinstance(error, (ValueError, OSError)) else repr(error)
            self.get_logger().error(f"configure failed, the node stays unconfigured: {self.last_failure}")
            self._release()
            return FAILURE
        self._values = values
        self._make_outputs(values)
        self._health_timer = self.create_timer(values["health_period"], self._report_health)
        self.last_failure = None
        self.get_logger().info(f"configured: model loaded on {values['device']}; prompt {values['prompt']!r}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for camera in self._values["cameras"]:
            self._subscribe(CompressedImage if is_compressed(camera) else Image, camera,
                            lambda msg, camera=camera: self._on_colour(camera, msg))
        for camera, topics in self._depth_cameras.items():
            pairing = self._loop.spatial.pairing
            self._subscribe(Image, topics.depth_topic, lambda msg, camera=camera: pairing.add_depth(camera, msg))
            self._subscribe(CameraInfo, topics.camera_info_topic,
                            lambda msg, camera=camera: pairing.set_camera_info(camera, msg))
        result = super().on_activate(state)  # enables the lifecycle publishers before the thread publishes
        self._loop.start()
        self.get_logger().info(
            f"active: detecting on {', '.join(self._values['cameras'])}; "
            f"tracking {'on' if self._values['tracking.enabled'] else 'off'}"
        )
        return result

    def _on_colour(self, camera: str, msg) -> None:
        if camera in self._depth_cameras:
            self._loop.spatial.pairing.colour_arrived(camera, stamp_seconds(msg.header))
        self._loop.slots.put(camera, msg)

    def _subscribe(self, msg_type, topic: str, callback) -> None:
        """Sensor-data QoS, overridable per topic with the qos_overrides.<topic>.subscription.* parameters."""
        self._camera_subscriptions.append(self.create_subscription(
            msg_type, topic, callback, qos_profile_sensor_data,
            qos_overriding_options=QoSOverridingOptions.with_default_policies()))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inference()
        self.get_logger().info("inactive: inference stopped, the model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: the model is released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inference()
        self._release()
        self.finished.set()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} failed: releasing everything, back to unconfigured")
        self._stop_inference()
        self._release()
        return SUCCESS

    def _apply_model_settings(self, values: dict) -> dict:
        """``values`` with the model's tuned settings in the parameters left alone (parameters.model_setting_changes),
        each set on the node too so that the parameter shows what runs; logs what changed and why."""
        tuned = None
        if values["model_settings"]:
            try:
                tuned = tuned_settings(values["model"] or None)
            except WeightsError as error:
                raise ValueError(str(error)) from error
        wanted = {}
        if tuned is not None:
            wanted, unused = parameters.tuned_parameter_values(tuned), parameters.tuned_settings_not_at_pace(tuned)
            if unused:
                self.get_logger().info(
                    f"settings tuned for the model ({tuned.source}) not used: {listed(unused)}; they apply only "
                    "between consecutive frames the detector took, and the node tracks at the detector's pace")
        changes = parameters.model_setting_changes(values, wanted, self._model_settings_set)
        for name, result in zip(changes, self.set_parameters([Parameter(n, value=v) for n, v in changes.items()])):
            if not result.successful:
                raise ValueError(f"setting {name} {changes[name]!r} at configure is refused: {result.reason}")
        applied = {name: value for name, value in changes.items() if name in wanted}
        if applied:
            self.get_logger().info(
                f"parameters set at configure from the settings tuned for the model ({tuned.source}): "
                f"{listed(applied)}; model_settings false uses the parameters as given")
        if len(applied) < len(changes):
            self.get_logger().info(
                "parameters set back to their defaults at configure (an earlier model's tuned settings, which this "
                f"one has not): {', '.join(name for name in changes if name not in applied)}")
        self._model_settings_set = {**{name: value for name, value in self._model_settings_set.items()
                                       if wanted.get(name) == value == values[name]}, **applied}
        return {**values, **changes}

    def _load(self, values: dict) -> InferenceLoop:
        for name, value in values.items():
            problem = parameters.check_value(name, value)
            if problem:
                raise ValueError(problem)
        detector = GroundingDinoDetector.from_pretrained(
            values["model"] or None,
            config=parameters.detector_config(values),
            device=values["device"],
            dtype=values["dtype"],
        )
        pending = {name: values[name] for name in parameters.RUNTIME_PARAMETERS}
        loop = InferenceLoop(MultiStreamDetector(detector, parameters.tracker_config(values)), self, Outputs(),
                             pending, values["max_image_pixels"])
        problem = values["prompt"].strip() and loop.prompt_problem(values["prompt"])
        if problem:  # an empty prompt waits for one on ~/prompt
            raise ValueError(f"the prompt parameter is refused: {problem}")
        self._depth_cameras = parameters.depth_cameras(values)
        if self._depth_cameras:
            pairing = DepthPairing(list(self._depth_cameras), values["depth.slop"], values["depth.wait"])
            loop.spatial = SpatialDetections(pairing, values["depth.smoothing"], values["depth.max_age"],
                                             values["max_image_pixels"], loop.health, self.get_logger())
        return loop

    def _make_outputs(self, values: dict) -> None:
        outputs = self._loop.outputs
        for camera in values["cameras"]:
            output = detections_topic(camera)
            outputs.detections[camera] = self._publisher(Detection2DArray, output, 10)
            if values["publish_annotated"]:
                outputs.annotated[camera] = self._publisher(Image, output + "/image", qos_profile_sensor_data)
            if camera in self._depth_cameras:
                outputs.detections_3d[camera] = self._publisher(Detection3DArray, output + "_3d", 10)
            outputs.phrases.append(self._publisher(LabelInfo, parameters.camera_namespace(camera) + "/label_info", LATCHED))
        outputs.phrases.append(self._publisher(LabelInfo, "~/phrases", LATCHED))

    def _publisher(self, msg_type, topic: str, qos):
        publisher = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._publishers_made.append(publisher)
        return publisher

    def _stop_inference(self) -> None:
        for subscription in self._camera_subscriptions:
            self.destroy_subscription(subscription)
        self._camera_subscriptions.clear()
        if self._loop is not None:
            self._loop.stop()

    def _release(self) -> None:
        """Drop what configure made; the model's memory goes with the last reference to it."""
        on_cuda = self._loop is not None and self._loop.pipeline.detector.device.type == "cuda"
        if self._health_timer is not None:
            self.destroy_timer(self._health_timer)
            self._health_timer = None
        for publisher in self._publishers_made:
            self.destroy_lifecycle_publisher(publisher)
        self._publishers_made.clear()
        self._loop = None
        gc.collect()  # the model's modules hold reference cycles
        if on_cuda:
            torch.cuda.empty_cache()
        self._return_freed_memory()

    def _return_freed_memory(self) -> None:
        """Give the heap pages the model freed back to the system. glibc keeps freed blocks under its mmap
        threshold for reuse (it raises that threshold as large blocks are freed), so without a trim a cleaned
        -up node stays as large as an active one: measured in one process, a random Grounding-DINO-T after a
        640x480 batch kept 450-650 MB resident after it was freed, 0 MB above the start floor after
        malloc_trim. Other C libraries (musl, macOS) have no malloc_trim: said once, nothing else to do."""
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the symbols the process has loaded
        if trim is not None:
            trim(0)
        elif not self._said_no_trim:
            self.get_logger().info("cleanup: this C library has no malloc_trim; freed memory is returned "
                                   "as the allocator sees fit")
            self._said_no_trim = True

    # Parameters and the prompt topic, on the executor's thread: only validate and record.
    def _on_prompt_msg(self, msg: String) -> None:
        result = self.set_parameters([Parameter("prompt", value=msg.data)])[0]
        if not result.successful:
            kept = self.get_parameter("prompt").value
            self.get_logger().warning(f"ignored prompt {msg.data!r}: {result.reason}; the prompt stays {kept!r}")

    def _validate_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        for parameter in changed:
            spec = parameters.SPECS_BY_NAME.get(parameter.name)
            if spec is None:
                continue
            if not spec.runtime and self._loop is not None:
                return SetParametersResult(successful=False, reason=(
                    f"{parameter.name} is read at configure: deactivate and clean up the node to change it"))
            problem = parameters.check_value(parameter.name, parameter.value)
            if not problem and parameter.name == "prompt" and self._loop is not None:
                problem = self._loop.prompt_problem(parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changed: list[Parameter]) -> None:
        if self._loop is not None:
            self._loop.set_pending({p.name: p.value for p in changed if p.name in parameters.RUNTIME_PARAMETERS})

    def _report_health(self) -> None:
        figures = self._loop.health_figures()
        self.get_logger().info(summary_line(figures))
        self._diagnostics.publish(figures)

    def close(self) -> None:
        """Shut down from whatever state the node is in (joins the inference thread); before ``destroy_node``."""
        if not self.finished.is_set():
            self.trigger_shutdown()

    def destroy_node(self) -> None:
        super().destroy_node()
        # rclpy leaves the lifecycle state machine (its services and transition publisher) to the garbage
        # collector, which keeps the DDS participant alive after rclpy shuts down in a longer-lived process.
        self._state_machine.destroy_when_not_in_use()


def start(node: DetectorNode) -> DetectorNode:
    """``autostart``: configure and activate ``node`` now; ValueError with the reason when that fails."""
    if node.get_parameter("autostart").value:
        if node.trigger_configure() != SUCCESS or node.trigger_activate() != SUCCESS:
            reason = node.last_failure or "activate failed (see the log)"
            node.close()
            node.destroy_node()
            raise ValueError(f"the node could not start: {reason}")
    return node


def main(args: list[str] | None = None) -> int:
    return spinning.run(lambda: start(DetectorNode()), NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
