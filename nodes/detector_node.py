"""The detector node: camera topics and a prompt in, tracked ``vision_msgs/Detection2DArray`` out.

Threads: the executor runs subscription callbacks, which only drop the message into a per-camera
slot (newest wins, see :mod:`nodes.frame_slots`); one inference thread takes every waiting frame,
applies pending prompt/threshold changes, decodes, runs the model on all of them as one batch,
tracks per camera and publishes. So the executor never waits for the model, and a prompt change
lands between batches.

Topics (names relative to the node, remappable): ``~/prompt`` (std_msgs/String in, reliable,
transient local), ``~/phrases`` (vision_msgs/LabelInfo out, latched), per camera
``<namespace>/detections`` and optionally ``<namespace>/detections/image``; ``/diagnostics``.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from vision_msgs.msg import Detection2DArray, LabelInfo

from nodes import lifecycle, parameters
from nodes.detection_conversion import detection_array_msg, label_info_msg
from nodes.diagnostics import DiagnosticsPublisher
from nodes.frame_slots import FrameSlots, PendingFrame
from nodes.health import BatchRecord, Health, stamp_in_sync, summary_line
from perception.camera_messages import (
    MalformedImageError,
    compressed_to_rgb,
    detections_topic,
    fill_image_msg,
    image_to_rgb,
    is_compressed,
    stamp_seconds,
)
from perception.detector import GroundingDinoDetector
from perception.drawing import draw_objects
from perception.streams import MultiStreamDetector

NODE_NAME = "grounding_dino"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class _PassTally:
    """What became of the frames of one pass of the inference thread, so an error can count the rest."""

    answered: int = 0  # detections published
    skipped: int = 0  # counted in health already: malformed, refused, or no prompt yet


class DetectorNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        for spec in parameters.SPECS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        values = {spec.name: self.get_parameter(spec.name).value for spec in parameters.SPECS}
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
        self._pipeline = MultiStreamDetector(detector, parameters.tracker_config(values))
        self._publish_annotated = values["publish_annotated"]
        self._max_image_pixels = values["max_image_pixels"]
        problem = values["prompt"].strip() and self._prompt_problem(values["prompt"])
        if problem:  # an empty prompt at start waits for one on ~/prompt
            raise ValueError(f"the prompt parameter is refused: {problem}")
        self._slots = FrameSlots()
        self._health = Health()
        self._pending_lock = threading.Lock()
        self._pending = {name: values[name] for name in parameters.RUNTIME_PARAMETERS}
        self._logged_no_prompt = False
        self._applied_prompt: str | None = None

        self._detection_publishers = {}
        self._annotated_publishers = {}
        for camera in values["cameras"]:
            output = detections_topic(camera)
            self._detection_publishers[camera] = self.create_publisher(Detection2DArray, output, 10)
            if self._publish_annotated:
                self._annotated_publishers[camera] = self.create_publisher(Image, output + "/image", qos_profile_sensor_data)
            msg_type = CompressedImage if is_compressed(camera) else Image
            self.create_subscription(
                msg_type,
                camera,
                lambda msg, camera=camera: self._slots.put(camera, msg),
                qos_profile_sensor_data,
                qos_overriding_options=QoSOverridingOptions.with_default_policies(),
            )
        self._phrases_publisher = self.create_publisher(LabelInfo, "~/phrases", LATCHED)
        self.create_subscription(String, "~/prompt", self._on_prompt_msg, LATCHED)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._diagnostics = DiagnosticsPublisher(self)
        self.create_timer(values["health_period"], self._report_health)

        self._worker = threading.Thread(target=self._run_worker, name="inference", daemon=True)
        self._slots.wake()  # applies the initial prompt before the first frame
        self._worker.start()
        self.get_logger().info(
            f"detecting on {', '.join(values['cameras'])}; prompt {values['prompt']!r}; "
            f"tracking {'on' if values['tracking.enabled'] else 'off'}"
        )

    # On the executor's thread: callbacks only validate and record.
    def _on_prompt_msg(self, msg: String) -> None:
        result = self.set_parameters([Parameter("prompt", value=msg.data)])[0]
        if not result.successful:
            kept = self.get_parameter("prompt").value
            self.get_logger().warning(f"ignored prompt {msg.data!r}: {result.reason}; the prompt stays {kept!r}")

    def _validate_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        for parameter in changed:
            problem = self._prompt_problem(parameter.value) if parameter.name == "prompt" else None
            if not problem and parameter.name in parameters.SPECS_BY_NAME:
                problem = parameters.check_value(parameter.name, parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _prompt_problem(self, prompt: str) -> str | None:
        """Why ``prompt`` cannot be used, or None. Tokenizing is cheap and thread-safe; the text encoder
        runs later, between batches."""
        try:
            self._pipeline.detector.tokenizer.chunk_prompt(prompt)
        except ValueError as error:
            return str(error)
        return None

    def _apply_parameters(self, changed: list[Parameter]) -> None:
        with self._pending_lock:
            for parameter in changed:
                if parameter.name in parameters.RUNTIME_PARAMETERS:
                    self._pending[parameter.name] = parameter.value
        self._slots.wake()  # apply now if the worker is idle, else right after the current batch

    def _report_health(self) -> None:
        figures = self._health.snapshot(self._slots.received, self._slots.dropped, self._slots.largest_backlog)
        figures["text_encoder_calls"] = self._pipeline.detector.text_encoder_calls
        self.get_logger().info(summary_line(figures))
        self._diagnostics.publish(figures)

    # On the inference thread.
    def _run_worker(self) -> None:
        while not self._slots.closed:
            frames = self._slots.take_all()
            tally = _PassTally()
            try:
                self._apply_pending()
                if frames:
                    self._process(frames, tally)
            except Exception as error:  # noqa: BLE001 - the last guard: the node must outlive one bad batch
                lost = len(frames) - tally.answered - tally.skipped
                failures = self._health.record_failed_batch(lost, tally.answered)
                self.get_logger().error(
                    f"inference failed, {lost} of {len(frames)} frames lost ({failures} failed batches so far, "
                    f"all counted in health): {error!r}",
                    throttle_duration_sec=10.0,
                )

    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending = dict(self._pending)
        config = self._pipeline.detector.config
        config.box_threshold, config.text_threshold = pending["box_threshold"], pending["text_threshold"]
        prompt = pending["prompt"]
        if prompt.strip() and prompt != self._applied_prompt:
            phrases = self._pipeline.set_prompt(prompt)
            self._applied_prompt = prompt
            self._phrases_publisher.publish(label_info_msg(Header(stamp=self.get_clock().now().to_msg()), phrases,
                                                           config.box_threshold))
            self.get_logger().info(f"prompt set: {phrases}")

    def _process(self, frames: list[PendingFrame], tally: _PassTally) -> None:
        start = time.perf_counter()
        if self._pipeline.phrases is None:
            self._health.record_skipped_without_prompt(len(frames))
            tally.skipped += len(frames)
            if not self._logged_no_prompt:
                self.get_logger().warning("no prompt yet: skipping frames until one is set on ~/prompt or 'prompt'")
                self._logged_no_prompt = True
            return
        decoded = []
        for frame in frames:
            try:
                decode = compressed_to_rgb if isinstance(frame.msg, CompressedImage) else image_to_rgb
                decoded.append((frame, decode(frame.msg, max_pixels=self._max_image_pixels)))
            except MalformedImageError as error:
                tally.skipped += 1
                if self._health.record_malformed(error.kind):
                    self.get_logger().warning(
                        f"skipping malformed message on {frame.camera} ({error.kind}): {error}; "
                        "further ones of this kind are only counted"
                    )
        if not decoded:
            return
        result = self._pipeline.process([(frame.camera, rgb) for frame, rgb in decoded],
                                        [stamp_seconds(frame.msg.header) for frame, _ in decoded])
        latencies = []
        for (frame, rgb), objects, error in zip(decoded, result.objects, result.errors):
            if objects is None:  # refused: publishing an empty array would claim nothing is there
                tally.skipped += 1
                self._log_refused(frame, rgb, error)
                continue
            self._detection_publishers[frame.camera].publish(detection_array_msg(frame.msg.header, objects))
            if self._publish_annotated:
                annotated = Image(header=frame.msg.header)
                fill_image_msg(annotated, draw_objects(rgb, objects))
                self._annotated_publishers[frame.camera].publish(annotated)
            tally.answered += 1
            latency = self._end_to_end(frame)
            if latency is not None:
                latencies.append(latency)
        self._health.record_batch(
            BatchRecord(tally.answered, time.perf_counter() - start, result.model_seconds, tuple(latencies))
        )

    def _log_refused(self, frame: PendingFrame, rgb, error: Exception) -> None:
        reason = type(error).__name__
        if self._health.record_refused(reason):
            height, width = rgb.shape[:2]
            self.get_logger().warning(
                f"the detector refused a {width}x{height} frame of {frame.camera} ({reason}): {error}; "
                "nothing is published for it, and further refusals for this reason are only counted"
            )

    def _end_to_end(self, frame: PendingFrame) -> float | None:
        """Seconds from the frame's stamp to now, or None without a stamp or when the stamp is not from
        the node's clock (counted, and named once per camera; see nodes.health)."""
        stamp = frame.msg.header.stamp
        stamp_ns = stamp.sec * 10**9 + stamp.nanosec
        if not stamp_ns:
            return None
        now_ns = self.get_clock().now().nanoseconds
        arrival_delay = (now_ns - stamp_ns) / 1e9 - (time.monotonic() - frame.received)
        if stamp_in_sync(arrival_delay):
            return (now_ns - stamp_ns) / 1e9
        if self._health.record_unsynced_stamp(frame.camera):
            self.get_logger().warning(
                f"stamps of {frame.camera} are {abs(arrival_delay):.6g} s "
                f"{'behind' if arrival_delay > 0 else 'ahead of'} the node's clock on arrival: another clock "
                "(a driver's own clock, sim time without use_sim_time, a replayed bag?); its frames are left "
                "out of the end-to-end latency and counted in unsynced_stamps"
            )
        return None

    def close(self) -> None:
        """Stop and join the inference thread; call before ``destroy_node``."""
        self._slots.close()
        self._worker.join()


def main(args: list[str] | None = None) -> int:
    return lifecycle.run(DetectorNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
