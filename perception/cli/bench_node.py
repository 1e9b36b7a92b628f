"""`gdino bench node [--json] [--frames N] [--cameras N] [--prompt-changes N]`: the ROS node under fixed-rate
cameras, in its own process.

The measuring happens in ``nodes.bench_driver``, started here as a subprocess (``perception`` never
imports ROS): it launches the detector node with ``--cameras`` camera topics and publishes frames over
loopback DDS in three phases: the first camera alone, every camera (from 2 cameras), and every camera while
the prompt changes ``--prompt-changes`` times. It reports per camera the answered frames per second and
end-to-end latency, ``batching_gain`` (answered per second with every camera / with the first alone, same
node, same run), ``prompt_change_ms`` (prompt message -> first detections array computed with it), dropped
frames, the largest backlog, the node's ``overhead`` ((time the inference thread is busy - the detector's
own time) / the detector's own time) and its resident memory after warm-up and at the end
(``rss_growth``). ``--frames 10000`` is the soak run. Here, after the node has exited, the text encoding
of the changed prompts is timed with the same model, the one term of the prompt-change goal (model batch
time + text encoding + frame interval) that the node does not report.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from perception.cli.errors import CliError
from perception.cli.model_args import add_detector_arguments, build_detector


def register_bench(bench_subparsers) -> None:
    parser = bench_subparsers.add_parser("node", help="the ROS detector node under a fixed-rate camera (needs ROS 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--frames", type=int, default=300,
                        help="frames per camera and phase (default 300; 10000 for a soak run)")
    parser.add_argument("--cameras", type=int, default=1, help="camera topics, each at --rate (default 1)")
    parser.add_argument("--prompt-changes", type=int, default=20,
                        help="prompt changes timed while every camera publishes (default 20; 0: none)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera frames per second (default 30)")
    parser.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    parser.add_argument("--prompt", default="a person . a car .", help="prompt of the node")
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def node_parameters(args: argparse.Namespace) -> list[str]:
    """The detector options as the node's NAME:=VALUE parameters."""
    if args.preset is not None:
        raise CliError("--preset is not a node parameter: convert the checkpoint to a model directory first")
    parameters = {
        "model": args.weights,  # none given: the node loads its default (bundled:crowds)
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "box_threshold": args.box_threshold,
        "text_threshold": args.text_threshold,
        "nms_iou": args.nms_iou,
        "present_phrase_threshold": args.present_phrase_threshold,
        "present_phrase_iou": args.present_phrase_iou,
        "shortest_edge": args.shortest_edge,
        "longest_edge": args.longest_edge,
    }
    return [f"{name}:={value}" for name, value in parameters.items() if value is not None]


def run(args: argparse.Namespace) -> int:
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError as error:
        raise CliError(f"--size must look like 640x480, got {args.size!r}") from error
    if args.frames < 2 or args.cameras < 1 or args.prompt_changes < 0:
        raise CliError("need --frames >= 2, --cameras >= 1 and --prompt-changes >= 0")
    command = [sys.executable, "-m", "nodes.bench_driver", "--frames", str(args.frames), "--rate", str(args.rate),
               "--width", str(width), "--height", str(height), "--prompt", args.prompt,
               "--cameras", str(args.cameras), "--prompt-changes", str(args.prompt_changes)]
    command += [item for parameter in node_parameters(args) for item in ("--node-param", parameter)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if "No module named 'rclpy'" in completed.stderr or "No module named 'vision_msgs'" in completed.stderr:
        raise CliError("ROS 2 is not installed in this environment: run `VENV=.venv bash scripts/install_ros.sh`")
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise CliError(f"the benchmark driver failed: {completed.stderr.strip().splitlines()[-1:] or 'no output'}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise CliError(f"{result['error']}; node log ends with: {result['node_log_tail'][-300:]!r}")
    if result["prompt_change_ms"] is not None:
        add_prompt_change_goal(result["prompt_change_ms"], args)
    if args.json:
        print(json.dumps(result))
        return 0
    latency = result["latency_ms"]
    print(f"{result['frames_answered']}/{result['frames_published']} frames answered at {result['rate_hz']} Hz "
          f"({result['image']}); node dropped {result['dropped']}, largest backlog {result['largest_backlog']}")
    print(f"end-to-end latency p50 {latency.get('p50')} ms, p95 {latency.get('p95')} ms "
          f"(goal {result['latency_goal_ms']} ms); model p50 {result['model_ms']['p50']} ms")
    for camera, figures in result["per_camera"].items():
        print(f"{camera}: {figures['answered_hz']} answered/s, latency p50 {figures['latency_ms'].get('p50')} ms, "
              f"p95 {figures['latency_ms'].get('p95')} ms")
    if result["batching_gain"] is not None:
        print(f"batching gain {result['batching_gain']} ({result['cameras']} cameras against one, same run)")
    change = result["prompt_change_ms"]
    if change is not None:
        print(f"prompt change p50 {change['p50']} ms, p95 {change['p95']} ms over {change['changes']} changes "
              f"(goal {change['goal_ms']} ms = model batch {change['model_batch_ms']} + text encoding "
              f"{change['text_encoding_ms']} + frame interval {change['frame_interval_ms']})")
    growth = "n/a (too few answered frames)" if result["rss_growth"] is None else f"{result['rss_growth']:.2%}"
    print(f"overhead {result['overhead']:.1%} of model time; resident memory {result['rss_mb']['end']} MB, "
          f"growth after warm-up {growth}")
    return 0


def add_prompt_change_goal(change: dict, args: argparse.Namespace) -> None:
    """Time the text encoding of the bench's prompts with the node's model (each prompt once, on a fresh
    detector: every call encodes) and add the goal: one model batch + one text encoding + one frame interval."""
    detector = build_detector(args)
    detector.set_prompt(args.prompt)  # the first call also sets up the text encoder's kernels
    seconds = []
    for prompt in change["prompts"]:
        start = time.perf_counter()
        detector.set_prompt(prompt)
        seconds.append(time.perf_counter() - start)
    change["text_encoding_ms"] = round(float(np.median(seconds)) * 1e3, 2)
    change["goal_ms"] = round(change["model_batch_ms"] + change["text_encoding_ms"] + change["frame_interval_ms"], 2)
    change["within_goal"] = change["p95"] <= change["goal_ms"]
