"""`gdino bench video [--json]`: the offline pipeline's frames per second against the model's own.

Both run on the same frames of the same video with the same detector and batch size (stride 1): the
model alone on frames decoded beforehand, then the whole pipeline (decode, detect, track, draw,
encode). ``ratio`` = pipeline / model; 1.0 means decoding, tracking and encoding hide entirely behind
the model.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from perception.cli.errors import CliError
from perception.cli.model_args import add_detector_arguments, build_detector
from perception.cli.video import parse_size

DEFAULT_VIDEO = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def register_bench(bench_subparsers) -> None:
    parser = bench_subparsers.add_parser("video", help="pipeline vs model-only frames per second on a video",
                                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--input", default=DEFAULT_VIDEO, help=f"video file (default {DEFAULT_VIDEO}, from opencv-doc)")
    parser.add_argument("--prompt", default="a person .", help='prompt (default "a person .")')
    parser.add_argument("--start", type=float, default=0.0, help="start time in seconds (default 0)")
    parser.add_argument("--end", type=float, default=10.0, help="end time in seconds (default 10)")
    parser.add_argument("--output-size", type=parse_size, default=None, help="output video WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate model-only and pipeline runs this many times and report medians "
                             "(default 3; single runs vary by 25%% on a 2-core machine)")
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def model_only_fps(detector, images: list, batch_size: int) -> float:
    """Frames per second of detector.detect over images in batches of batch_size (after one warm-up batch).

    Runs on a worker thread, as the pipeline's inference does: torch's CPU thread pool behaves
    differently on the main thread (measured here: several times slower on a loaded machine), which
    would skew the ratio.
    """
    seconds: list[float] = []

    def measure() -> None:
        detector.detect(images[:batch_size])
        started = time.perf_counter()
        for begin in range(0, len(images), batch_size):
            detector.detect(images[begin:begin + batch_size])
        seconds.append(time.perf_counter() - started)

    worker = threading.Thread(target=measure, name="bench-model")
    worker.start()
    worker.join()
    if not seconds:
        raise RuntimeError("the model-only measurement failed (see the traceback above)")
    return len(images) / seconds[0]


def run(args: argparse.Namespace) -> int:
    from perception.video.decode import VideoInputError, VideoReader
    from perception.video.job import VideoJobConfig, process_video
    from perception.video.outputs import VideoOutputs

    try:
        config = VideoJobConfig(batch_size=args.batch_size, start_time=args.start, end_time=args.end,
                                output_size=args.output_size)
        images = [frame.image for frame in VideoReader(args.input, args.start, args.end)]
    except (VideoInputError, ValueError) as error:
        raise CliError(str(error)) from error
    if not images:
        raise CliError(f"no frames in {args.input} between {args.start} s and {args.end} s")
    detector = build_detector(args)
    try:
        detector.set_prompt(args.prompt)
    except ValueError as error:
        raise CliError(str(error)) from error
    if args.rounds < 1:
        raise CliError(f"--rounds must be at least 1, got {args.rounds}")
    rounds, summary = [], None
    for _ in range(args.rounds):
        model_fps = model_only_fps(detector, images, args.batch_size)
        with tempfile.TemporaryDirectory(prefix="gdino-bench-video-") as directory:
            outputs = VideoOutputs(str(Path(directory) / "out.mp4"), str(Path(directory) / "out.jsonl"))
            summary = process_video(detector, args.prompt, args.input, outputs, config)
        rounds.append({"model_fps": round(model_fps, 3), "pipeline_fps": round(summary.fps, 3)})
    model_fps = statistics.median(r["model_fps"] for r in rounds)
    pipeline_fps = statistics.median(r["pipeline_fps"] for r in rounds)
    result = {
        "video": args.input,
        "frames": summary.frames,
        "frame_size": list(images[0].shape[1::-1]),
        "batch_size": args.batch_size,
        "weights": detector.description,
        "model_fps": round(model_fps, 3),  # medians over the rounds
        "pipeline_fps": round(pipeline_fps, 3),
        "ratio": round(pipeline_fps / model_fps, 3),
        "encoder": summary.encoder,
        "rounds": rounds,
    }
    if args.json:
        print(json.dumps(result))
    else:
        width, height = result["frame_size"]
        print(f"{result['frames']} frames {width}x{height}, batch {args.batch_size}: "
              f"pipeline {result['pipeline_fps']} frames/s, model alone {result['model_fps']} frames/s, "
              f"ratio {result['ratio']}")
    return 0
