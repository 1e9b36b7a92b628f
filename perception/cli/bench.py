"""`gdino bench <what> [--json]`: benchmarks that print figures. Each benchmark module adds its own parser."""
from __future__ import annotations

import argparse
import importlib
import json

# Modules exposing register_bench(bench_subparsers).
BENCH_MODULES = (
    "perception.cli.bench_attention",
    "perception.cli.bench_video",
    "perception.cli.bench_node",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (print figures; --json for one JSON object)")
    bench = parser.add_subparsers(dest="bench", required=True)
    detector = bench.add_parser("detector", help="our detector vs transformers on identical weights and inputs")
    detector.add_argument("--json", action="store_true", help="print one JSON object")
    detector.add_argument("--model", choices=("swint", "tiny"), default="swint",
                          help="swint: full Grounding-DINO-T shapes (default); tiny: a quick smoke run")
    detector.add_argument("--sizes", default="800x1333,480x640", help="frame sizes HxW, comma separated")
    detector.add_argument("--repeats", type=int, default=3, help="timed runs per size (median reported)")
    detector.add_argument("--implementation", default="auto", choices=("auto", "cuda", "cpu", "pytorch"),
                          help="deformable attention implementation of our model")
    detector.set_defaults(run=run_detector)
    for module_name in BENCH_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register_bench(bench)


def run_detector(args: argparse.Namespace) -> int:
    from perception.bench.detector import run
    from perception.cli.errors import CliError

    try:
        sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(",")]
    except ValueError as error:
        raise CliError(f"--sizes must look like 800x1333,480x640, got {args.sizes!r}") from error
    result = run(args.model, sizes, args.repeats, args.implementation)
    if args.json:
        print(json.dumps(result))
    else:
        for size, figures in result["sizes"].items():
            print(f"{size}: ours {figures['ours_ms']} ms, transformers {figures['reference_ms']} ms, "
                  f"ratio {figures['ratio']}, peak memory {figures['peak_memory_mb']} MB")
            print(f"  stages (ms): {figures['stages_ms']}")
    return 0
