"""`gdino label INPUT... --prompt "a person ." --output DIR`: many videos, bags and image folders labeled on Ray.

INPUT: video files, rosbag2 folders or .mcap files, folders of images, glob patterns ("rec/**/*.mp4") and
manifests (.txt or .lst files, one path or pattern a line). DIR gets ``inputs/<key>/`` per input (what
`gdino video` or `gdino bag` writes, plus the input's dataset fragment), ``coco.json`` for the whole run
(categories: the prompt's phrases; the frames kept by --every or --every-seconds, with --jpeg as JPEG files,
with --yolo also YOLO labels) and ``summary.json`` (each input's outcome). A rerun with the same settings
skips the inputs already done and unchanged. See perception/labeling/ for the details.

Ray: with no --ray-address a local Ray instance is started in this process; --ray-address auto (or
ray://HOST:PORT) uses a running cluster, whose nodes must see the inputs and DIR at the same paths.

Exit codes: 0 every input done; 2 a problem the user can fix (one line, nothing run); 3 an input was
damaged (processed with counts) or failed (its reason in summary.json), the others are complete;
130 Ctrl-C or SIGTERM (the inputs in progress are finished first; a second one stops at once), DIR holds
a valid summary and the dataset of the inputs finished.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

from perception.camera_messages import DEFAULT_MAX_PIXELS
from perception.cli.errors import EXIT_DAMAGED_INPUT, EXIT_OK, CliError
from perception.cli.model_args import add_detector_arguments, build_detector
from perception.cli.video import add_tracker_arguments, tracker_config_from_args

MODEL_OPTIONS = ("weights", "preset", "box_threshold", "text_threshold", "nms_iou", "present_phrase_threshold",
                 "present_phrase_iou", "device", "dtype", "batch_size", "shortest_edge", "longest_edge")
HASHED_MODEL_OPTIONS = ("weights", "preset", "box_threshold", "text_threshold", "nms_iou", "present_phrase_threshold",
                        "present_phrase_iou", "dtype", "shortest_edge", "longest_edge")


def register(subparsers) -> None:
    parser = subparsers.add_parser("label", help="label many videos, bags and image folders into a dataset, on Ray",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="videos, bag folders or .mcap files, image folders, globs, manifests")
    parser.add_argument("--prompt", required=True, help="phrases separated by ' . ', e.g. 'a person . a red mug .'")
    parser.add_argument("--output", type=Path, required=True, help="output folder (created if missing)")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--every", type=int, default=1, help="keep every n-th frame of a video or camera (default 1)")
    keep.add_argument("--every-seconds", type=float, default=None, help="keep one frame every this many seconds")
    parser.add_argument("--jpeg", action="store_true", help="write the kept frames as JPEG files")
    parser.add_argument("--yolo", action="store_true", help="also write YOLO label files (needs --jpeg)")
    parser.add_argument("--annotate", action="store_true",
                        help="also write annotated videos (such a video is not split into chunks) and bag images")
    parser.add_argument("--chunk-seconds", type=float, default=600.0,
                        help="split videos longer than this into chunks for several workers (0: never; default 600)")
    parser.add_argument("--chunk-overlap", type=float, default=2.0,
                        help="seconds each chunk reads before its start, to join track ids (default 2)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"larger images in bags and image folders are refused unread (default {DEFAULT_MAX_PIXELS})")
    ray_group = parser.add_argument_group("Ray")
    ray_group.add_argument("--ray-address", default=None,
                           help="'auto' or ray://HOST:PORT to use a running cluster (default: a local instance)")
    ray_group.add_argument("--workers", type=int, default=None,
                           help="model workers (default: the cluster's CPUs / --cpus-per-worker, or GPUs / --gpus-per-worker)")
    ray_group.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs (and torch threads) per worker (default 1)")
    ray_group.add_argument("--gpus-per-worker", type=float, default=0.0,
                           help="GPUs per worker, e.g. 1 with --device cuda (default 0)")
    ray_group.add_argument("--retries", type=int, default=2,
                           help="times an input is tried again after its worker died (default 2)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_tracker_arguments(parser)
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def _settings(args: argparse.Namespace):
    from perception.labeling.settings import LabelSettings

    model = {name: getattr(args, name) for name in HASHED_MODEL_OPTIONS}
    try:
        return LabelSettings(args.prompt, model, tracker_config_from_args(args), args.every, args.every_seconds,
                             args.chunk_seconds, args.chunk_overlap, args.annotate, args.jpeg, args.yolo,
                             args.max_pixels, args.batch_size)
    except ValueError as error:
        raise CliError(str(error)) from error


def run(args: argparse.Namespace) -> int:
    from perception.labeling.inputs import LabelInputError, expand_inputs

    try:
        inputs = expand_inputs(args.inputs)
    except LabelInputError as error:
        raise CliError(str(error)) from error
    if not args.output.parent.is_dir():
        raise CliError(f"cannot create {args.output}: the folder {args.output.parent} does not exist")
    if args.output.exists() and not args.output.is_dir():
        raise CliError(f"{args.output} exists and is not a folder")
    if args.workers is not None and args.workers < 1 or args.retries < 0:
        raise CliError(f"--workers must be >= 1 and --retries >= 0; got {args.workers}, {args.retries}")
    settings = _settings(args)
    from perception.labeling.job import LabelRun, LabelSetupError
    from perception.labeling.workers import WorkerPool, connect, default_workers
    from perception.model.tokenizer import parse_prompt

    try:
        parse_prompt(args.prompt)
    except ValueError as error:
        raise CliError(str(error)) from error
    import ray

    args.output.mkdir(exist_ok=True)
    cpus = os.cpu_count() or 1
    started = connect(args.ray_address, max(cpus, (args.workers or 1) * args.cpus_per_worker))
    model = argparse.Namespace(**{name: getattr(args, name) for name in MODEL_OPTIONS})
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if args.gpus_per_worker > gpus:
            raise CliError(f"--gpus-per-worker {args.gpus_per_worker}: the Ray cluster has {gpus:g} GPUs")
        workers = args.workers or default_workers(args.cpus_per_worker, args.gpus_per_worker)
        pool = WorkerPool(functools.partial(build_detector, model), workers, args.cpus_per_worker, args.gpus_per_worker)
        try:
            records = LabelRun(pool, inputs, args.output, settings, args.retries, progress=not args.quiet).run()
        except LabelSetupError as error:
            raise CliError(str(error)) from error
        finally:
            pool.close()
    finally:
        if started:
            ray.shutdown()
    for record in records:
        line = f"{record.outcome}: {record.input}: {record.frames} frames, {record.detections} detections"
        if record.reason:
            line += f" ({record.reason})"
        print(line, file=sys.stderr if record.damaged else sys.stdout)
    counts = {outcome: sum(r.outcome == outcome for r in records) for outcome in ("done", "damaged", "failed", "skipped")}
    print(f"{len(records)} inputs on {workers} workers: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
          + f" -> {args.output}")
    return EXIT_DAMAGED_INPUT if any(record.damaged for record in records) else EXIT_OK


def register_bench(bench_subparsers) -> None:
    """`gdino bench label` (perception/labeling/bench.py): batch throughput with 1 and 2 workers against
    `gdino video` on each input in turn."""
    from perception.labeling import bench

    parser = bench_subparsers.add_parser("label", help="gdino label's throughput with 1 and 2 workers vs gdino video",
                                         description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--videos", type=int, default=8, help="generated videos (default 8)")
    parser.add_argument("--frames", type=int, default=30, help="frames per video (default 30)")
    parser.add_argument("--prompt", default="red heart . blue star . purple circle . green square .",
                        help="prompt (default: phrases of the generated videos)")
    add_detector_arguments(parser)
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import json

    from perception.labeling.bench import run_bench as measure

    if args.videos < 1 or args.frames < 1:
        raise CliError("--videos and --frames must be >= 1")
    model = argparse.Namespace(**{name: getattr(args, name) for name in MODEL_OPTIONS})
    figures = measure(functools.partial(build_detector, model), args.prompt, args.videos, args.frames)
    print(json.dumps(figures) if args.json else "\n".join(f"{key}: {value}" for key, value in figures.items()))
    return EXIT_OK
