"""`gdino bench attention`: the native CPU kernel against the pure-PyTorch reference at encoder shapes.

One encoder layer's deformable attention per frame size (8 heads of 32 channels, 4 levels at strides
8-64, 4 points, every token a query; locations near each query as the encoder makes them). Reports
median wall times, their ratio `speedup` = reference / CPU kernel, and the largest difference.
With --backward, also the backward alone (the three input gradients of one upstream gradient, as
training computes them), timed the same way, and each gradient's largest difference relative to its
largest magnitude.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import torch

from perception.cli.errors import CliError
from perception.ops import describe_implementation, multi_scale_deformable_attention
from perception.ops.native import BUILD_HINT, load_native_ops
from perception.ops.synthetic import AttentionInputs, encoder_inputs

DEFAULT_FRAMES = ("800x1333", "480x640")
GRADIENT_NAMES = ("value", "sampling_locations", "attention_weights")


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    """Adds `attention` to the subparsers of `gdino bench`."""
    parser = bench_subparsers.add_parser(
        "attention",
        help="time multi-scale deformable attention: native CPU kernel vs pure-PyTorch reference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--frame",
        action="append",
        dest="frames",
        metavar="HxW",
        help=f"frame size whose encoder shapes are timed, repeatable (default: {' and '.join(DEFAULT_FRAMES)})",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation and frame, >= 1 (default 5)")
    parser.add_argument("--backward", action="store_true", help="also time the backward (the gradients training needs)")
    parser.set_defaults(run=run)


def parse_frame(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise CliError(f"--frame must be HEIGHTxWIDTH with positive integers, e.g. 800x1333, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def median_milliseconds(inputs: AttentionInputs, implementation: str, repeats: int) -> tuple[float, torch.Tensor]:
    """Median wall time of `repeats` calls after one warm-up call, and the output."""
    output = multi_scale_deformable_attention(*inputs.as_args(), implementation=implementation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        multi_scale_deformable_attention(*inputs.as_args(), implementation=implementation)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), output


def median_backward_milliseconds(
    inputs: AttentionInputs, implementation: str, repeats: int
) -> tuple[float, list[torch.Tensor]]:
    """Median wall time of the backward alone (a fresh forward before each, untimed) after one warm-up, and the
    gradients of value, sampling locations and attention weights for a fixed upstream gradient."""
    def forward() -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        value, locations, weights = (
            tensor.detach().requires_grad_()
            for tensor in (inputs.value, inputs.sampling_locations, inputs.attention_weights)
        )
        output = multi_scale_deformable_attention(
            value, inputs.spatial_shapes, inputs.level_start_index, locations, weights, implementation=implementation
        )
        return output, (value, locations, weights)

    output, leaves = forward()
    grad_output = torch.linspace(-1, 1, output.numel(), dtype=output.dtype).view_as(output)
    gradients = list(torch.autograd.grad(output, leaves, grad_output))
    times = []
    for _ in range(repeats):
        output, leaves = forward()
        start = time.perf_counter()
        torch.autograd.grad(output, leaves, grad_output)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), gradients


def measure_frame(height: int, width: int, repeats: int, backward: bool = False) -> dict:
    inputs = encoder_inputs(height, width)
    with torch.inference_mode():
        kernel_ms, kernel_output = median_milliseconds(inputs, "cpu", repeats)
        reference_ms, reference_output = median_milliseconds(inputs, "pytorch", repeats)
    _, num_queries, num_heads, num_levels, num_points, _ = inputs.sampling_locations.shape
    row = {
        "frame": f"{height}x{width}",
        "level_shapes": inputs.spatial_shapes.tolist(),
        "queries": num_queries,
        "heads": num_heads,
        "channels": num_heads * inputs.value.shape[-1],
        "levels": num_levels,
        "points": num_points,
        "cpu_kernel_ms": kernel_ms,
        "reference_ms": reference_ms,
        "speedup": reference_ms / kernel_ms,
        "max_abs_difference": (kernel_output - reference_output).abs().max().item(),
    }
    if backward:
        kernel_backward_ms, kernel_gradients = median_backward_milliseconds(inputs, "cpu", repeats)
        reference_backward_ms, reference_gradients = median_backward_milliseconds(inputs, "pytorch", repeats)
        row.update({
            "cpu_kernel_backward_ms": kernel_backward_ms,
            "reference_backward_ms": reference_backward_ms,
            "backward_speedup": reference_backward_ms / kernel_backward_ms,
            # per gradient, relative to its largest magnitude (location gradients scale with the map size); a
            # location gradient jumps where a sample crosses a pixel border, so float32 rounding of a location on
            # a border can leave a percent-size difference there in either implementation
            "backward_max_relative_difference": {
                name: ((ours - expected).abs().max() / expected.abs().max()).item()
                for name, ours, expected in zip(GRADIENT_NAMES, kernel_gradients, reference_gradients)
            },
        })
    return row


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise CliError(f"--repeats must be >= 1, got {args.repeats}")
    frames = [parse_frame(text) for text in args.frames or DEFAULT_FRAMES]
    unavailable = load_native_ops().unavailable_reason("cpu")
    if unavailable is not None:
        raise CliError(f"the native CPU kernel is not available: {unavailable}; {BUILD_HINT}")
    results = [measure_frame(height, width, args.repeats, args.backward) for height, width in frames]
    report = {
        "benchmark": "multi-scale deformable attention, float32, one encoder layer"
        + (", forward and backward" if args.backward else ""),
        "implementation": describe_implementation("cpu"),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "frames": results,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['benchmark']}; CPU kernel: {report['implementation']}; {report['threads']} threads")
    print(f"{'frame':>10} {'queries':>8} {'CPU kernel ms':>14} {'reference ms':>13} {'speedup':>8} {'max diff':>9}")
    for row in results:
        print(
            f"{row['frame']:>10} {row['queries']:>8} {row['cpu_kernel_ms']:>14.1f} {row['reference_ms']:>13.1f} "
            f"{row['speedup']:>7.1f}x {row['max_abs_difference']:>9.1e}"
        )
        if args.backward:
            differences = " / ".join(f"{row['backward_max_relative_difference'][name]:.1e}" for name in GRADIENT_NAMES)
            print(
                f"{'backward':>19} {row['cpu_kernel_backward_ms']:>14.1f} {row['reference_backward_ms']:>13.1f} "
                f"{row['backward_speedup']:>7.1f}x   relative differences of "
                f"{' / '.join(GRADIENT_NAMES)}: {differences}"
            )
    return 0
