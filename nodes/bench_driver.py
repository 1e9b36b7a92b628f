"""The ROS side of ``gdino bench node``: starts the detector node in its own process, publishes frames
into it at a fixed rate over loopback DDS, and prints one JSON object with what it measured.

    python -m nodes.bench_driver --frames 300 --rate 30 --cameras 4 --node-param model:=random:tiny

One node, three phases: ``one_camera`` (frames on the first camera only), ``all_cameras`` (every camera at
the rate; skipped with one camera) and ``prompt_changes`` (every camera at the rate while prompts change).
Measured here: end-to-end latency per answered frame (publish -> detections received, one clock), answered
frames per second per camera and phase, ``batching_gain`` (answered per second, all cameras / one camera),
and the node's resident memory after warm-up and at the end. From the node's /diagnostics: its model time,
overhead ((busy - model) / model time), drops, largest backlog, and per phase the mean model time per batch.

A prompt change is timed from publishing the prompt message to receiving the first detections array the
node published after the prompt's phrases (``~/phrases``): the inference thread publishes the phrases when
it applies a prompt, before the first array computed with it and after the last one computed without it,
so the DDS source timestamps (one clock, one thread) separate old arrays from new ones exactly, whether
or not an array holds detections.
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
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, LabelInfo

from nodes.spinning import BackgroundNode
from nodes.loopback import isolated_ros_environment, shm_files
from perception.camera_messages import detections_topic, rgb8_fields
from perception.model.tokenizer import parse_prompt
from perception.training.synthetic import SceneConfig, generate_video

PHRASES = "/grounding_dino/phrases"
PROMPT = "/grounding_dino/prompt"
DRAIN_SECONDS = 3.0  # after the last frame, wait this long past the last answer for stragglers
# The memory baseline waits for this many answered frames as well as the warm-up frames: allocator
# caches fill per processed batch, not per published frame.
WARMUP_ANSWERS = 50
RSS_SAMPLE_SECONDS = 10.0
SETTLE_SECONDS = 1.0  # frames flow this long before the first prompt change
CHANGE_TIMEOUT = 120.0  # seconds a prompt change may take before the node counts as stuck
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nodes.bench_driver")
    parser.add_argument("--frames", type=int, default=300, help="frames per camera and phase")
    parser.add_argument("--warmup", type=int, default=None,
                        help="frames of each phase left out of its rates, latencies and the memory baseline "
                             "(default max(60, frames / 10), at most half the frames)")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second per camera")
    parser.add_argument("--cameras", type=int, default=1, help="camera topics of the node")
    parser.add_argument("--prompt-changes", type=int, default=20, help="prompt changes in the last phase")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--prompt", default="a person . a car .")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra detector node parameter (repeatable)")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for the node")
    args = parser.parse_args(argv)
    if args.frames < 2 or args.rate <= 0 or args.cameras < 1 or args.prompt_changes < 0:
        parser.error("need --frames >= 2, --rate > 0, --cameras >= 1, --prompt-changes >= 0")
    if min(args.width, args.height) < 64:
        parser.error("need --width and --height >= 64 (the generated scenes' smallest side)")
    if args.warmup is None:
        args.warmup = min(max(60, args.frames // 10), args.frames // 2)
    return args


def camera_topics(count: int) -> list[str]:
    return [f"/bench/cam{index}/image_raw" for index in range(count)]


def change_prompts(count: int) -> list[str]:
    """Prompts of two phrases of the generated scenes' vocabulary, 24 distinct ones before one repeats, so
    every change encodes its text (the detector keeps the last 8)."""
    vocabulary = SceneConfig().phrases
    pairs = [vocabulary[index : index + 2] for index in range(0, len(vocabulary) - 1, 2)]
    return [" . ".join(pairs[k % len(pairs)]) + " ." for k in range(count)]


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
    def __init__(self, cameras: list[str]) -> None:
        super().__init__("bench_driver")
        self.publishers = [self.node.create_publisher(Image, camera, RELIABLE) for camera in cameras]
        self.prompt_publisher = self.node.create_publisher(String, PROMPT, LATCHED)
        self.sent: dict[tuple[int, int], float] = {}  # (camera, stamp in ns) -> monotonic publish time
        self.answers: dict[tuple[int, int], float] = {}  # (camera, stamp in ns) -> monotonic receive time
        self.arrays: list[tuple[int, int, int]] = []  # every detections array: camera, (DDS source, received) ns
        self.label_infos: list[tuple[int, int, list[str]]] = []  # (DDS source, received) time in ns, phrases
        self.health: dict[str, str] = {}
        self.health_reports = 0
        for index, camera in enumerate(cameras):
            self.node.create_subscription(Detection2DArray, detections_topic(camera),
                                          lambda msg, info, index=index: self._on_detections(index, msg, info), RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE)
        self.node.create_subscription(LabelInfo, PHRASES, self._on_phrases, LATCHED)

    def _on_detections(self, camera: int, msg, info) -> None:
        self.answers[(camera, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)] = time.monotonic()
        self.arrays.append((camera, info["source_timestamp"], info["received_timestamp"]))

    def _on_phrases(self, msg, info) -> None:
        names = [entry.class_name for entry in msg.class_map]
        self.label_infos.append((info["source_timestamp"], info["received_timestamp"], names))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("grounding_dino"):
                self.health = {kv.key: kv.value for kv in status.values}
                self.health_reports += 1

    def publish(self, camera: int, payload: dict) -> int:
        msg = Image(**payload)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.sent[(camera, stamp)] = time.monotonic()
        self.publishers[camera].publish(msg)
        return stamp


def wait_for(find, timeout: float, what: str, node_process: subprocess.Popen):
    """Poll ``find`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (found := find()):
        if node_process.poll() is not None:
            raise RuntimeError(f"the detector node exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)
    return found


def publish_frames(driver: Driver, payloads: list[list[dict]], active: int, rate: float, count: int | None,
                   stop: threading.Event | None = None, on_tick=None) -> list[list[int]]:
    """Publish one frame on each of the first ``active`` cameras per tick, ``count`` ticks (None: until
    ``stop``); per camera, the stamps published."""
    stamps: list[list[int]] = [[] for _ in range(active)]
    start, tick = time.monotonic(), 0
    while tick < count if count is not None else not stop.is_set():
        time.sleep(max(0.0, start + tick / rate - time.monotonic()))
        for camera in range(active):
            stamps[camera].append(driver.publish(camera, payloads[camera][tick % len(payloads[camera])]))
        if on_tick is not None:
            on_tick(tick)
        tick += 1
    return stamps


def phase_summary(driver: Driver, stamps: list[list[int]], warmup: int, rate: float, cameras: list[str]) -> dict:
    """Answered frames per second and latency per camera over the frames after ``warmup``; the window is
    the first to the last of those frames' publish times plus one frame interval."""
    measured = [[(camera, s) for s in camera_stamps[warmup:]] for camera, camera_stamps in enumerate(stamps)]
    seconds = driver.sent[measured[0][-1]] - driver.sent[measured[0][0]] + 1.0 / rate
    per_camera, all_latencies = {}, []
    for camera, keys in enumerate(measured):
        latencies = [driver.answers[key] - driver.sent[key] for key in keys if key in driver.answers]
        all_latencies += latencies
        per_camera[cameras[camera]] = {
            "published": len(stamps[camera]),
            "answered": sum(1 for s in stamps[camera] if (camera, s) in driver.answers),
            "answered_hz": round(len(latencies) / seconds, 2),
            "latency_ms": percentiles_ms(latencies),
        }
    return {"frames_per_camera": len(stamps[0]), "warmup_frames": warmup, "measured_seconds": round(seconds, 2),
            "answered_hz": round(sum(c["answered_hz"] for c in per_camera.values()), 2),
            "per_camera": per_camera, "_latencies": all_latencies}


def settled_health(driver: Driver, stamps: list[list[int]], node_process: subprocess.Popen) -> dict[str, str]:
    """Wait for the answers to the last frames (or for DRAIN_SECONDS without one), then for a health
    report made after them."""
    last, published = [(camera, s[-1]) for camera, s in enumerate(stamps) if s], time.monotonic()

    def drained() -> bool:
        latest = max([published, *driver.answers.values()])
        return time.monotonic() - latest > DRAIN_SECONDS or all(key in driver.answers for key in last)

    wait_for(drained, 600, "the last answers", node_process)
    reports = driver.health_reports
    wait_for(lambda: driver.health_reports >= reports + 2, 10, "a health report after the last frame", node_process)
    return dict(driver.health)


def first_array_after(arrays: list[tuple[int, int, int]], applied: int, cameras: int) -> tuple[int, int] | None:
    """The (source, received) times of the first array published after ``applied`` (a source time), once
    every camera has one; None before. Each camera's arrays arrive in order, so the first published is the
    earliest of the cameras' first arrays after ``applied``, not necessarily the first one received."""
    firsts: dict[int, tuple[int, int]] = {}
    for camera, source, received in arrays:
        if source > applied:
            firsts.setdefault(camera, (source, received))
    return min(firsts.values()) if len(firsts) == cameras else None


def time_prompt_change(driver: Driver, prompt: str, node_process: subprocess.Popen) -> tuple[float, float]:
    """Publish ``prompt``; seconds until its phrases arrive on ~/phrases and until the first array
    published after them arrives (both from the prompt message, on the system clock DDS stamps with)."""
    phrases, first_array = parse_prompt(prompt)[0], len(driver.arrays)
    sent = time.time_ns()
    driver.prompt_publisher.publish(String(data=prompt))
    applied, label_received = wait_for(
        lambda: next(((source, received) for source, received, names in driver.label_infos
                      if source > sent and names == phrases), None),
        CHANGE_TIMEOUT, f"the phrases of {prompt!r} on {PHRASES}", node_process)
    first = wait_for(lambda: first_array_after(driver.arrays[first_array:], applied, len(driver.publishers)),
                     CHANGE_TIMEOUT, f"an array computed with {prompt!r} on every camera", node_process)
    return (label_received - sent) / 1e9, (first[1] - sent) / 1e9


def measure_prompt_changes(driver: Driver, payloads, args, node_process) -> tuple[list, list[list[int]]]:
    """While every camera publishes at the rate, time each prompt change (see ``time_prompt_change``); it
    ends when every camera has an array computed with the new prompt."""
    stop = threading.Event()
    stamps: list[list[int]] = []
    publisher = threading.Thread(target=lambda: stamps.extend(publish_frames(driver, payloads, args.cameras, args.rate, None, stop)))
    publisher.start()
    rng, timings, previous = np.random.default_rng(0), [], 1.0 / args.rate
    try:
        time.sleep(SETTLE_SECONDS)
        for prompt in change_prompts(args.prompt_changes):
            # A change ends just after the node published a batch; waiting a random time up to twice the
            # previous change (about 3 batches) lets the next prompt land anywhere in a batch.
            time.sleep(rng.uniform(0, 2 * previous))
            timings.append(time_prompt_change(driver, prompt, node_process))
            previous = max(1.0 / args.rate, timings[-1][1])
    finally:
        stop.set()
        publisher.join()
    return timings, stamps


def node_arguments(args: argparse.Namespace, cameras: list[str]) -> list[str]:
    node_args = ["-p", f"cameras:=[{','.join(cameras)}]", "-p", f"prompt:={args.prompt}", "-p", "health_period:=0.5"]
    for camera in cameras:
        node_args += ["-p", f"qos_overrides.{camera}.subscription.reliability:=reliable"]
    return node_args + [item for param in args.node_param for item in ("-p", param)]


def health_delta(before: dict[str, str], after: dict[str, str]) -> dict:
    """Mean model time per batch, frames per batch and text encodings between two health reports."""
    def change(key: str) -> float:
        return float(after[key]) - float(before[key])

    batches = change("batches")
    return {"model_batch_ms": round(change("model_seconds") / batches * 1e3, 2) if batches else None,
            "frames_per_batch": round(change("processed") / batches, 2) if batches else None,
            "text_encoder_calls": int(change("text_encoder_calls")),
            "text_side_restarts": int(change("text_side_restarts"))}


def run(args: argparse.Namespace, scratch: Path) -> dict:
    os.environ.update(isolated_ros_environment(scratch))  # read by DDS at rclpy.init, not at import
    shm_before = shm_files()
    cameras = camera_topics(args.cameras)
    log = open(scratch / "node.log", "w")
    node_process = subprocess.Popen([sys.executable, "-m", "nodes.detector_node", "--ros-args",
                                     *node_arguments(args, cameras)], stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    driver = Driver(cameras)
    phases: dict[str, dict] = {}
    try:
        wait_for(lambda: driver.label_infos and driver.health_reports
                 and all(p.get_subscription_count() > 0 for p in driver.publishers),
                 args.startup_timeout, "the node to start", node_process)
        # Generated scenes (objects the bundled model knows), one moving scene per camera; bytes, not
        # arrays: rclpy copies a numpy array element by element.
        payloads = [[rgb8_fields(image) | {"data": image.tobytes()}
                     for image in generate_video(camera, 30, (args.height, args.width))[0]] for camera in range(args.cameras)]
        memory = {"baseline": None, "baseline_frame": None, "samples": []}

        def sample_memory(tick: int) -> None:
            if memory["baseline_frame"] is None and tick >= args.warmup and len(driver.answers) >= WARMUP_ANSWERS:
                memory["baseline"], memory["baseline_frame"] = rss_bytes(node_process.pid), tick
            if tick % max(1, round(args.rate * RSS_SAMPLE_SECONDS)) == 0:
                memory["samples"].append((tick, rss_bytes(node_process.pid)))

        start, before = time.monotonic(), dict(driver.health)
        stamps = publish_frames(driver, payloads, 1, args.rate, args.frames, on_tick=sample_memory)
        publish_seconds = time.monotonic() - start
        health = settled_health(driver, stamps, node_process)
        # Its model time per batch includes the first, slower batches: only the goal of a one-camera run reads it.
        phases["one_camera"] = (phase_summary(driver, stamps, args.warmup, args.rate, cameras)
                                | health_delta(before, health))
        if args.cameras > 1:
            before = health
            stamps = publish_frames(driver, payloads, args.cameras, args.rate, args.frames)
            health = settled_health(driver, stamps, node_process)
            phases["all_cameras"] = (phase_summary(driver, stamps, args.warmup, args.rate, cameras)
                                     | health_delta(before, health))
        rss_end = rss_bytes(node_process.pid)
        changes: list[tuple[float, float]] = []
        if args.prompt_changes:
            changes, stamps = measure_prompt_changes(driver, payloads, args, node_process)
            after_changes = settled_health(driver, stamps, node_process)
            # The node is warm by now: every frame of this phase counts.
            phases["prompt_changes"] = phase_summary(driver, stamps, 0, args.rate, cameras) | health_delta(health, after_changes)
            health = after_changes
    finally:
        driver.close()
        rclpy.shutdown()
        node_process.send_signal(signal.SIGINT)
        exit_code = node_process.wait(timeout=120)
        log.close()
    throughput = phases.get("all_cameras", phases["one_camera"])
    first_phase = phases["one_camera"]["_latencies"]  # in publish order: the soak run's growth
    quarter = max(1, len(first_phase) // 4)
    measured = [latency for phase in phases.values() for latency in phase.pop("_latencies")]
    model_p95 = float(health.get("model_ms_p95", "nan"))
    latency = percentiles_ms(measured)
    goal_ms = model_p95 + 1e3 / args.rate
    return {
        "cameras": args.cameras,
        "frames_published": len(driver.sent),
        "frames_answered": len(driver.answers),
        "warmup_frames": args.warmup,
        "rate_hz": args.rate,
        "achieved_publish_hz": round(args.frames / publish_seconds, 2),  # the first phase's ticks per second
        "image": f"{args.width}x{args.height}",
        "per_camera": throughput["per_camera"],
        "batching_gain": round(phases["all_cameras"]["answered_hz"] / phases["one_camera"]["answered_hz"], 3)
        if "all_cameras" in phases and phases["one_camera"]["answered_hz"] else None,
        "prompt_change_ms": prompt_change_summary(changes, phases.get("prompt_changes"), throughput, args),
        "phases": phases,
        "latency_ms": latency,  # every phase's answered frames after its warm-up
        "latency_growth_ms": round(float(np.mean(first_phase[-quarter:]) - np.mean(first_phase[:quarter])) * 1e3, 2)
        if first_phase else None,
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
            "after_warmup": round(memory["baseline"] / 2**20, 1) if memory["baseline"] else None,
            "max": round(max([rss for _, rss in memory["samples"]] + [rss_end]) / 2**20, 1),
            "end": round(rss_end / 2**20, 1),
            f"every_{RSS_SAMPLE_SECONDS:.0f}s": [round(rss / 2**20, 1) for _, rss in memory["samples"]],
        },
        "memory_baseline_frame": memory["baseline_frame"],  # None: fewer than WARMUP_ANSWERS frames were answered
        "rss_growth": rss_growth(memory["baseline"], memory["baseline_frame"], memory["samples"], rss_end),
        "node_exit_code": exit_code,
        "leftover_shm_files": sorted(shm_files() - shm_before),
    }


def prompt_change_summary(changes: list[tuple[float, float]], phase: dict | None, steady: dict,
                          args: argparse.Namespace) -> dict | None:
    """Percentiles of prompt message -> first array computed with it, and the target's terms measured here
    (the text encoding is timed by the caller, which can load the model). The goal's batch time is the mean
    model time per batch of ``steady``, the phase with the same cameras and no prompt changes: in the changes'
    own phase a batch also holds the text sides its changes restarted (``changes_model_batch_ms``)."""
    if not changes:
        return None
    to_array = percentiles_ms([array for _, array in changes])
    return {"p50": to_array["p50"], "p95": to_array["p95"], "max": to_array["max"], "changes": len(changes),
            "to_phrases_ms": percentiles_ms([phrases for phrases, _ in changes]),
            "model_batch_ms": steady["model_batch_ms"], "frames_per_batch": steady["frames_per_batch"],
            "changes_model_batch_ms": phase["model_batch_ms"], "text_side_restarts": phase["text_side_restarts"],
            "frame_interval_ms": round(1e3 / args.rate, 2), "text_encoder_calls": phase["text_encoder_calls"],
            "prompts": change_prompts(len(changes))}


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
