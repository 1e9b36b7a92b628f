"""The ROS side of ``gdino bench node``: starts the detector node in its own process, publishes frames
into it at a fixed rate over loopback DDS, and prints one JSON object with what it measured.

    python -m nodes.bench_driver --frames 300 --rate 30 --node-param model:=random:tiny

Measured here: end-to-end latency per answered frame (publish -> detections received, one clock),
frames never answered, and the node's resident memory after warm-up and at the end. From the node's
/diagnostics: its model time, overhead ((busy - model) / model time), drops and largest backlog.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from nodes.spinning import BackgroundNode
from nodes.loopback import isolated_ros_environment, shm_files
from perception.camera_messages import rgb8_fields

CAMERA = "/bench/image_raw"
DETECTIONS = "/bench/detections"
DRAIN_SECONDS = 3.0  # after the last frame, wait this long past the last answer for stragglers
# The memory baseline waits for this many answered frames as well as the warm-up frames: allocator
# caches fill per processed batch, not per published frame.
WARMUP_ANSWERS = 50
RSS_SAMPLE_SECONDS = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nodes.bench_driver")
    parser.add_argument("--frames", type=int, default=300, help="frames to publish")
    parser.add_argument("--warmup", type=int, default=None,
                        help="frames left out of latency and memory baselines (default max(60, frames / 10))")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--prompt", default="a person . a car .")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra detector node parameter (repeatable)")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for the node")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rate <= 0 or args.width < 32 or args.height < 32:
        parser.error("need --frames >= 1, --rate > 0, --width and --height >= 32")
    if args.warmup is None:
        args.warmup = min(max(60, args.frames // 10), args.frames - 1)
    return args


def frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """A box sliding over a grey field: distinct frames, a steady object for the tracker."""
    images = []
    for index in range(count):
        image = np.full((height, width, 3), 128, np.uint8)
        x = (index * 7) % max(1, width - width // 4)
        image[height // 3 : height // 3 + height // 4, x : x + width // 4] = (200, 40, 40)
        images.append(image)
    return images


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def rss_growth(baseline: int | None, baseline_frame: int | None, samples: list[tuple[int, int]], end: int) -> float | None:
    """Resident memory growth after warm-up, a fraction. A single reading moves by a percent or two
    with the tensors of the batch in flight, so with enough samples the medians of the first and
    the last three readings after the baseline are compared instead."""
    if baseline is None:
        return None
    after = [rss for index, rss in samples if index >= baseline_frame] + [end]
    if len(after) >= 6:
        return round(float(np.median(after[-3:]) / np.median(after[:3]) - 1.0), 4)
    return round(end / baseline - 1.0, 4)


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    values = np.asarray(seconds) * 1e3
    return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 95, 99)} | {"max": round(float(values.max()), 2)}


class Driver(BackgroundNode):
    def __init__(self) -> None:
        super().__init__("bench_driver")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.publisher = self.node.create_publisher(Image, CAMERA, reliable)
        self.sent: dict[int, float] = {}  # stamp in ns -> monotonic publish time
        self.answers: dict[int, float] = {}  # stamp in ns -> monotonic receive time
        self.health: dict[str, str] = {}
        self.health_reports = 0
        self.ready = threading.Event()
        self.node.create_subscription(Detection2DArray, DETECTIONS, self._on_detections, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.node.create_subscription(LabelInfo, "/grounding_dino/phrases", lambda _: self.ready.set(), latched)

    def _on_detections(self, msg) -> None:
        self.answers[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = time.monotonic()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("grounding_dino"):
                self.health = {kv.key: kv.value for kv in status.values}
                self.health_reports += 1

    def publish(self, payload: dict) -> int:
        msg = Image(**payload)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.sent[stamp] = time.monotonic()
        self.publisher.publish(msg)
        return stamp


def wait(condition, timeout: float, what: str, node_process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if node_process.poll() is not None:
            raise RuntimeError(f"the detector node exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def run(args: argparse.Namespace, scratch: Path) -> dict:
    os.environ.update(isolated_ros_environment(scratch))  # read by DDS at rclpy.init, not at import
    shm_before = shm_files()
    node_args = [
        "-p", f"cameras:=[{CAMERA}]", "-p", f"prompt:={args.prompt}", "-p", "health_period:=0.5",
        "-p", f"qos_overrides.{CAMERA}.subscription.reliability:=reliable",
    ] + [item for param in args.node_param for item in ("-p", param)]
    log = open(scratch / "node.log", "w")
    node_process = subprocess.Popen([sys.executable, "-m", "nodes.detector_node", "--ros-args", *node_args],
                                    stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    driver = Driver()
    try:
        wait(lambda: driver.ready.is_set() and driver.publisher.get_subscription_count() > 0,
             args.startup_timeout, "the node to start", node_process)
        # bytes, not arrays: rclpy copies a numpy array element by element.
        payloads = [rgb8_fields(image) | {"data": image.tobytes()} for image in frames(30, args.height, args.width)]
        rss_after_warmup, baseline_frame, rss_samples = None, None, []
        start = time.monotonic()
        stamps = []
        for index in range(args.frames):
            time.sleep(max(0.0, start + index / args.rate - time.monotonic()))
            stamps.append(driver.publish(payloads[index % len(payloads)]))
            if baseline_frame is None and index >= args.warmup and len(driver.answers) >= WARMUP_ANSWERS:
                rss_after_warmup, baseline_frame = rss_bytes(node_process.pid), index
            if index % max(1, round(args.rate * RSS_SAMPLE_SECONDS)) == 0:
                rss_samples.append((index, rss_bytes(node_process.pid)))
        publish_seconds = time.monotonic() - start

        def drained() -> bool:
            last = max(driver.answers.values(), default=start)
            return time.monotonic() - last > DRAIN_SECONDS or all(s in driver.answers for s in stamps[-1:])

        wait(drained, 600, "the last answers", node_process)
        rss_end = rss_bytes(node_process.pid)
        reports = driver.health_reports
        wait(lambda: driver.health_reports >= reports + 2, 10, "a health report after the last frame", node_process)
        health = dict(driver.health)
    finally:
        driver.close()
        rclpy.shutdown()
        node_process.send_signal(signal.SIGINT)
        exit_code = node_process.wait(timeout=120)
        log.close()
    measured = [driver.answers[s] - driver.sent[s] for s in stamps[args.warmup:] if s in driver.answers]
    quarter = max(1, len(measured) // 4)
    model_p95 = float(health.get("model_ms_p95", "nan"))
    latency = percentiles_ms(measured)
    goal_ms = model_p95 + 1e3 / args.rate
    return {
        "frames_published": args.frames,
        "frames_answered": sum(1 for s in stamps if s in driver.answers),
        "warmup_frames": args.warmup,
        "rate_hz": args.rate,
        "achieved_publish_hz": round(args.frames / publish_seconds, 2) if publish_seconds > 0 else None,
        "image": f"{args.width}x{args.height}",
        "latency_ms": latency,
        "latency_growth_ms": round(float(np.mean(measured[-quarter:]) - np.mean(measured[:quarter])) * 1e3, 2)
        if measured else None,
        "model_ms": {"p50": float(health.get("model_ms_p50", "nan")), "p95": model_p95},
        "latency_goal_ms": round(goal_ms, 2),
        "latency_within_goal": bool(latency) and latency["p95"] <= goal_ms,
        "received_by_node": int(health.get("received", -1)),  # published - received: lost in transport
        "dropped": int(health.get("dropped", -1)),
        "largest_backlog": int(health.get("largest_backlog", -1)),
        "batches": int(health.get("batches", -1)),
        "overhead": float(health.get("overhead", "nan")),
        "overhead_within_goal": float(health.get("overhead", "nan")) <= 0.05,
        "rss_mb": {
            "after_warmup": round(rss_after_warmup / 2**20, 1) if rss_after_warmup else None,
            "max": round(max([rss for _, rss in rss_samples] + [rss_end]) / 2**20, 1),
            "end": round(rss_end / 2**20, 1),
            f"every_{RSS_SAMPLE_SECONDS:.0f}s": [round(rss / 2**20, 1) for _, rss in rss_samples],
        },
        "memory_baseline_frame": baseline_frame,  # None: fewer than WARMUP_ANSWERS frames were answered
        "rss_growth": rss_growth(rss_after_warmup, baseline_frame, rss_samples, rss_end),
        "node_exit_code": exit_code,
        "leftover_shm_files": sorted(shm_files() - shm_before),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gdino-bench-node-") as scratch:
        try:
            result = run(args, Path(scratch))
        except RuntimeError as error:
            tail = (Path(scratch) / "node.log").read_text()[-2000:] if (Path(scratch) / "node.log").exists() else ""
            print(json.dumps({"error": str(error), "node_log_tail": tail}))
            return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
