"""`gdino bench <what> [--json]`: benchmarks that print figures. Each benchmark module adds its own parser."""
from __future__ import annotations

import argparse
import importlib
import json

from perception.cli.model_args import DTYPE_CHOICES, DTYPE_HELP

# Modules exposing register_bench(bench_subparsers).
BENCH_MODULES = (
    "perception.cli.bench_attention",
    "perception.cli.bench_video",
    "perception.cli.bench_node",
    "perception.cli.label",
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
    detector.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="our " + DTYPE_HELP)
    detector.add_argument("--batch-sizes", default="1", help="frames per call, comma separated (default 1)")
    detector.add_argument("--compile", action="store_true",
                          help="also time our model under torch.compile (its first call, which compiles, is reported apart)")
    detector.add_argument("--reference-dtype", default="float32", choices=DTYPE_CHOICES[1:],
                          help="transformers' precision (default float32, the baseline every dtype of ours is held to)")
    detector.add_argument("--phrases", default=None,
                          help="time prompts of N distinct phrases instead of the short default prompt, e.g. 150 or "
                               "48,150,1203 (a long prompt runs in chunks of 256 tokens): also prints chunks and "
                               "chunk_cost_ratio (time with the whole prompt / time with its first chunk alone)")
    detector.add_argument("--floor", action="store_true",
                          help="also print the floor on this machine: the forward's GFLOP (text encoder left out) at "
                               "the best rate of single linear products in --dtype, and floor_ratio (that time / "
                               "transformers'): no ratio under it is reachable here")
    detector.set_defaults(run=run_detector)
    for module_name in BENCH_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        try:
            module.register_bench(bench)
        except ModuleNotFoundError as error:  # e.g. gdino bench label on a GPU image without norfair
            _register_unavailable(bench, module_name.rsplit(".", 1)[1].removeprefix("bench_"), error.name)


def _register_unavailable(bench, name: str, package: str) -> None:
    """`gdino bench <name>` that says which package it needs, so the other benchmarks run without it."""
    def refuse(args: argparse.Namespace) -> int:
        from perception.cli.errors import CliError

        raise CliError(f"gdino bench {name} needs the {package} package, which is not installed")

    # No option prefix: whatever options follow are taken as they are, and refused with the reason.
    parser = bench.add_parser(name, help=f"(needs {package}, not installed)", prefix_chars="+", add_help=False)
    parser.add_argument("arguments", nargs="*")
    parser.set_defaults(run=refuse)


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
    phrases = _parse_list(args.phrases, "--phrases", "48,150", int) if args.phrases else []
    if args.repeats < 1 or min(batch_sizes) < 1:
        raise CliError("--repeats and --batch-sizes must be >= 1")
    from perception.bench.long_prompts import MAX_PHRASES

    if not all(1 <= count <= MAX_PHRASES for count in phrases):
        raise CliError(f"--phrases must be between 1 and {MAX_PHRASES}, got {args.phrases}")
    if phrases and (args.compile or len(batch_sizes) > 1):
        raise CliError("--phrases times the eager model on one batch size: drop --compile and give one --batch-sizes")
    try:
        result = run(args.model, sizes, args.repeats, args.implementation, device=args.device, dtype=args.dtype,
                     compile=args.compile, batch_sizes=batch_sizes, phrases=tuple(phrases),
                     reference_dtype=args.reference_dtype, with_floor=args.floor)
    except (ValueError, RuntimeError) as error:  # a device torch does not have, an implementation not built
        raise CliError(str(error)) from error
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']}, {result['device']}, ours {result['dtype']}, transformers {result['reference_dtype']}")
    for count, per_size in result.get("phrases", {}).items():
        for size, figures in per_size.items():
            print(f"{size}, {count} phrases in {figures['chunks']} chunks: ours {figures['ours']['p50_ms']} ms "
                  f"(first chunk alone {figures['first_chunk']['p50_ms']} ms: chunk_cost_ratio "
                  f"{figures['chunk_cost_ratio']}), transformers {figures['reference']['p50_ms']} ms "
                  f"(once per chunk); ratio {figures['ratio']}")
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
    if "floor" in result:
        floor = result["floor"]
        print(f"floor: {floor['gflop']} GFLOP at {floor['product_gflops']} GFLOP/s ({floor['dtype']} products) = "
              f"{floor['floor_ms']} ms; floor_ratio {floor['floor_ratio']}")
    return 0
