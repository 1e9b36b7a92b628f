"""`gdino bench <what> [--json]`: benchmarks that print figures. Each benchmark module adds its own parser."""
from __future__ import annotations

import argparse
import importlib
import json

from perception.cli.model_args import DTYPE_CHOICES

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
    detector.add_argument("--device", default="cpu", help="torch device for both models, e.g. cpu or cuda:0 (default cpu)")
    detector.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES, help="both models' precision (default float32)")
    detector.add_argument("--batch-sizes", default="1", help="frames per call, comma separated (default 1)")
    detector.add_argument("--compile", action="store_true",
                          help="also time our model under torch.compile (its first call, which compiles, is reported apart)")
    detector.set_defaults(run=run_detector)
    for module_name in BENCH_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register_bench(bench)


def _parse_list(text: str, option: str, example: str, parse_item) -> list:
    from perception.cli.errors import CliError

    try:
        return [parse_item(item) for item in text.split(",")]
    except ValueError as error:
        raise CliError(f"{option} must look like {example}, got {text!r}") from error


def run_detector(args: argparse.Namespace) -> int:
    from perception.bench.detector import run
    from perception.cli.errors import CliError

    sizes = _parse_list(args.sizes, "--sizes", "800x1333,480x640", lambda item: tuple(map(int, item.lower().split("x"))))
    batch_sizes = _parse_list(args.batch_sizes, "--batch-sizes", "1,4", int)
    if args.repeats < 1 or min(batch_sizes) < 1:
        raise CliError("--repeats and --batch-sizes must be >= 1")
    try:
        result = run(args.model, sizes, args.repeats, args.implementation, device=args.device, dtype=args.dtype,
                     compile=args.compile, batch_sizes=batch_sizes)
    except (ValueError, RuntimeError) as error:  # a device torch does not have, an implementation not built
        raise CliError(str(error)) from error
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']}, {result['device']}, {result['dtype']}")
    for size, batches in result["sizes"].items():
        for batch, figures in batches.items():
            sides = [("ours", figures["ours"]), ("compiled", figures.get("compiled")),
                     ("transformers", figures["reference"])]
            text = ", ".join(f"{name} {side['p50_ms']} ms (p95 {side['p95_ms']}, {side['fps']} fps, "
                             f"peak +{side['peak_memory_mib']} MiB)" for name, side in sides if side)
            print(f"{size} batch {batch}: {text}; ratio {figures['ratio']}"
                  + (f"; transformers failed: {figures['reference_error']}" if "reference_error" in figures else ""))
            if "stages_ms" in figures:
                print(f"  stages (ms): {figures['stages_ms']}")
    return 0
