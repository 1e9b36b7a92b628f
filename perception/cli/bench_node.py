"""`gdino bench node [--json] [--frames N]`: the ROS node under a 30 Hz camera, in its own process.

The measuring happens in ``nodes.bench_driver``, started here as a subprocess (``perception`` never
imports ROS): it launches the detector node, publishes frames at ``--rate`` over loopback DDS and
reports end-to-end latency percentiles, dropped frames, the largest backlog, the node's ``overhead``
((time the inference thread is busy - the detector's own time) / the detector's own time) and the
node's resident memory after warm-up and at the end (``rss_growth``). ``--frames 10000`` is the soak run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from perception.cli.errors import CliError
from perception.cli.model_args import add_detector_arguments


def register_bench(bench_subparsers) -> None:
    parser = bench_subparsers.add_parser("node", help="the ROS detector node under a fixed-rate camera (needs ROS 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--frames", type=int, default=300, help="frames to publish (default 300; 10000 for a soak run)")
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
        "model": args.weights,  # none given: the node loads its default (the bundled model)
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "box_threshold": args.box_threshold,
        "text_threshold": args.text_threshold,
        "nms_iou": args.nms_iou,
        "shortest_edge": args.shortest_edge,
        "longest_edge": args.longest_edge,
    }
    return [f"{name}:={value}" for name, value in parameters.items() if value is not None]


def run(args: argparse.Namespace) -> int:
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError as error:
        raise CliError(f"--size must look like 640x480, got {args.size!r}") from error
    command = [sys.executable, "-m", "nodes.bench_driver", "--frames", str(args.frames), "--rate", str(args.rate),
               "--width", str(width), "--height", str(height), "--prompt", args.prompt]
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
    if args.json:
        print(json.dumps(result))
        return 0
    latency = result["latency_ms"]
    print(f"{result['frames_answered']}/{result['frames_published']} frames answered at {result['rate_hz']} Hz "
          f"({result['image']}); node dropped {result['dropped']}, largest backlog {result['largest_backlog']}")
    print(f"end-to-end latency p50 {latency.get('p50')} ms, p95 {latency.get('p95')} ms "
          f"(goal {result['latency_goal_ms']} ms); model p50 {result['model_ms']['p50']} ms")
    growth = "n/a (too few answered frames)" if result["rss_growth"] is None else f"{result['rss_growth']:.2%}"
    print(f"overhead {result['overhead']:.1%} of model time; resident memory {result['rss_mb']['end']} MB, "
          f"growth after warm-up {growth}")
    return 0
