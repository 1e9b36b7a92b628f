"""The detector node's inference thread and what it owns between configure and cleanup.

Subscription callbacks only drop each message into a per-camera slot (newest wins, see
:mod:`nodes.frame_slots`); the thread takes every waiting frame, applies pending prompt/threshold changes,
decodes, runs the model on all of them as one batch, tracks per camera and publishes. So the executor never
waits for the model. A prompt change lands between batches, or inside one: the batch in the model takes it
before its text side, or drops its text side and runs it again (perception.detector.PromptUpdates), so the
first answer with the new phrases comes about one batch time after the message, not two. ``start``/``stop``
follow the node's activate/deactivate; the pipeline (model and tokenizer), the counters and the prompt in force
outlive them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from nodes.detection_conversion import detection_array_msg, label_info_msg
from nodes.frame_slots import FrameSlots, PendingFrame
from nodes.health import BatchRecord, Health, stamp_in_sync
from nodes.spatial_detections import SpatialDetections
from perception.camera_messages import MalformedImageError, compressed_to_rgb, fill_image_msg, image_to_rgb
from perception.drawing import draw_objects
from perception.streams import MultiStreamDetector


@dataclass
class Outputs:
    """Where results go: per camera detections (3D ones for cameras with depth, annotated images when
    asked), and the phrases."""

    detections: dict[str, Any] = field(default_factory=dict)
    detections_3d: dict[str, Any] = field(default_factory=dict)
    annotated: dict[str, Any] = field(default_factory=dict)
    phrases: list[Any] = field(default_factory=list)


@dataclass
class _PassTally:
    """What became of the frames of one pass of the inference thread, so an error can count the rest."""

    answered: int = 0  # detections published
    skipped: int = 0  # counted in health already: malformed, refused, or no prompt yet


class InferenceLoop:
    """``pending``: the run-time parameters (prompt, thresholds) to apply before the next batch."""

    def __init__(self, pipeline: MultiStreamDetector, node, outputs: Outputs, pending: dict[str, Any],
                 max_image_pixels: int) -> None:
        self.pipeline = pipeline
        self.slots = FrameSlots()
        self.health = Health()
        self._node = node  # for its logger and clock
        self.outputs = outputs
        self._max_image_pixels = max_image_pixels
        self._pending_lock = threading.Lock()
        self._pending = dict(pending)
        self._prompt_waiting = threading.Event()  # set by set_pending, cleared when applied
        self._applied_prompt: str | None = None
        self._logged_no_prompt = False
        self._worker: threading.Thread | None = None
        self.spatial: SpatialDetections | None = None  # set for cameras with a depth topic
        self._step_rates: dict[str, Any] = {}  # per camera: its StepRateCheck, None once its advice is given

    def start(self) -> None:
        """Start the thread; it applies the prompt in force before the first frame."""
        self.slots.reopen()
        self.slots.wake()
        self._worker = threading.Thread(target=self._run, name="inference", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Let the current batch finish, then join the thread; frames still waiting count as dropped."""
        if self._worker is not None:
            self.slots.close()
            self._worker.join()
            self._worker = None

    def set_pending(self, changes: dict[str, Any]) -> None:
        with self._pending_lock:
            self._pending.update(changes)
            prompt = changes.get("prompt")
            if prompt is not None and prompt.strip() and prompt != self._applied_prompt:
                self._prompt_waiting.set()
        self.slots.wake()  # apply now if the worker is idle, else within the current batch (prompt_waiting)

    def prompt_waiting(self) -> bool:
        """A new prompt waits to be applied (perception.detector.PromptUpdates: the batch in the model
        drops its text side and takes it, so a prompt change answers within about one batch time)."""
        return self._prompt_waiting.is_set()

    def prompt_problem(self, prompt: str) -> str | None:
        """Why ``prompt`` cannot be used, or None. Tokenizing is cheap and thread-safe; the text encoder
        runs later, between batches."""
        try:
            self.pipeline.detector.tokenizer.chunk_prompt(prompt)
        except ValueError as error:
            return str(error)
        return None

    def health_figures(self) -> dict[str, float]:
        figures = self.health.snapshot(self.slots.received, self.slots.dropped, self.slots.largest_backlog)
        figures["text_encoder_calls"] = self.pipeline.detector.text_encoder_calls
        figures["text_side_restarts"] = self.pipeline.detector.text_side_restarts
        return figures

    def _run(self) -> None:
        while not self.slots.closed:
            frames = self.slots.take_all()
            tally = _PassTally()
            try:
                self.apply_pending()
                if frames:
                    self._process(frames, tally)
            except Exception as error:  # noqa: BLE001 - the last guard: the node must outlive one bad batch
                lost = len(frames) - tally.answered - tally.skipped
                failures = self.health.record_failed_batch(lost, tally.answered)
                self._node.get_logger().error(
                    f"inference failed, {lost} of {len(frames)} frames lost ({failures} failed batches so far, "
                    f"all counted in health): {error!r}",
                    throttle_duration_sec=10.0,
                )

    def apply_pending(self) -> None:
        """Apply the waiting prompt and thresholds (from this loop's thread only: between batches, and
        from inside a batch through perception.detector.PromptUpdates)."""
        with self._pending_lock:
            pending = dict(self._pending)
            self._prompt_waiting.clear()
        config = self.pipeline.detector.config
        config.box_threshold, config.text_threshold = pending["box_threshold"], pending["text_threshold"]
        prompt = pending["prompt"]
        if prompt.strip() and prompt != self._applied_prompt:
            phrases = self.pipeline.set_prompt(prompt)
            self._applied_prompt = prompt
            msg = label_info_msg(Header(stamp=self._node.get_clock().now().to_msg()), phrases, config.box_threshold)
            for publisher in self.outputs.phrases:
                publisher.publish(msg)
            self._node.get_logger().info(f"prompt set: {phrases}")

    def _process(self, frames: list[PendingFrame], tally: _PassTally) -> None:
        start = time.perf_counter()
        if self.pipeline.phrases is None:
            self.health.record_skipped_without_prompt(len(frames))
            tally.skipped += len(frames)
            if not self._logged_no_prompt:
                self._node.get_logger().warning("no prompt yet: skipping frames until one is set on ~/prompt or 'prompt'")
                self._logged_no_prompt = True
            return
        decoded = []
        for frame in frames:
            try:
                decode = compressed_to_rgb if isinstance(frame.msg, CompressedImage) else image_to_rgb
                decoded.append((frame, decode(frame.msg, max_pixels=self._max_image_pixels)))
            except MalformedImageError as error:
                tally.skipped += 1
                if self.health.record_malformed(error.kind):
                    self._node.get_logger().warning(
                        f"skipping malformed message on {frame.camera} ({error.kind}): {error}; "
                        "further ones of this kind are only counted"
                    )
        if not decoded:
            return
        if self.spatial is not None:  # their depth candidates stay with them while the model runs
            for frame, _ in decoded:
                self.spatial.claim(frame)
        result = self.pipeline.process([(frame.camera, rgb) for frame, rgb in decoded],
                                       [frame.time for frame, _ in decoded], prompt_updates=self)
        latencies = []
        for (frame, rgb), objects, error in zip(decoded, result.objects, result.errors):
            if objects is None:  # refused: publishing an empty array would claim nothing is there
                tally.skipped += 1
                self._log_refused(frame, rgb, error)
                continue
            self._publish(frame, rgb, objects)
            self._check_step_rate(frame)
            tally.answered += 1
            latency = self._end_to_end(frame)
            if latency is not None:
                latencies.append(latency)
        self.health.record_batch(
            BatchRecord(tally.answered, time.perf_counter() - start, result.model_seconds, tuple(latencies))
        )

    def _check_step_rate(self, frame: PendingFrame) -> None:
        """Step each camera's tracker at the camera's rate while its detector keeps up with a camera faster than
        tracking.frame_rate, and say so (perception.tracking.pace); with tracking.step_at_camera_rate off, say once
        what to set."""
        config = self.pipeline.tracker_config
        if config is None:
            return
        if frame.camera not in self._step_rates:
            from perception.tracking.pace import StepRateCheck  # tracking's packages only where tracking is on

            self._step_rates[frame.camera] = StepRateCheck(config)
        check = self._step_rates[frame.camera]
        camera = None if check is None else check.taken(frame.time, frame.index)
        if camera is None:
            return
        if config.step_at_camera_rate:
            self.pipeline.step_tracker_at(frame.camera, camera.step_rate(config))
            self._node.get_logger().info(f"tracking on {frame.camera}: {camera.change(config)}")
        else:
            self._node.get_logger().warning(f"tracking on {frame.camera}: {camera.advice(config)}")
            self._step_rates[frame.camera] = None

    def _publish(self, frame: PendingFrame, rgb, objects) -> None:
        self.outputs.detections[frame.camera].publish(detection_array_msg(frame.msg.header, objects))
        if frame.camera in self.outputs.annotated:
            annotated = Image(header=frame.msg.header)
            fill_image_msg(annotated, draw_objects(rgb, objects))
            self.outputs.annotated[frame.camera].publish(annotated)
        if frame.camera in self.outputs.detections_3d:
            boxes = self.spatial.message(frame, rgb.shape[:2], objects)
            if boxes is not None:
                self.outputs.detections_3d[frame.camera].publish(boxes)

    def _log_refused(self, frame: PendingFrame, rgb, error: Exception) -> None:
        reason = type(error).__name__
        if self.health.record_refused(reason):
            height, width = rgb.shape[:2]
            self._node.get_logger().warning(
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
        now_ns = self._node.get_clock().now().nanoseconds
        arrival_delay = (now_ns - stamp_ns) / 1e9 - (time.monotonic() - frame.received)
        if stamp_in_sync(arrival_delay):
            return (now_ns - stamp_ns) / 1e9
        if self.health.record_unsynced_stamp(frame.camera):
            self._node.get_logger().warning(
                f"stamps of {frame.camera} are {abs(arrival_delay):.6g} s "
                f"{'behind' if arrival_delay > 0 else 'ahead of'} the node's clock on arrival: another clock "
                "(a driver's own clock, sim time without use_sim_time, a replayed bag?); its frames are left "
                "out of the end-to-end latency and counted in unsynced_stamps"
            )
        return None
