"""`gdino eval tracking [--json]`: HOTA, IDF1, MOTA and identity switches (TrackEval) on generated videos
with exact ground truth, for the whole pipeline with a model or for the tracker alone on noisy truth."""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

from perception.cli.errors import CliError
from perception.cli.model_args import add_detector_arguments, build_detector
from perception.cli.video import add_tracker_arguments, parse_size, tracker_config_from_args

# The targets for the bundled model.
TARGET_IDF1 = 0.90
TARGET_SWITCHES_PER_20_TRACKS = 1.0


def register_eval(eval_subparsers) -> None:
    parser = eval_subparsers.add_parser("tracking", help="tracking metrics on generated videos with ground truth",
                                        description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--detections", choices=("model", "noisy-truth"), default="model",
                        help="model: run the detector on the videos (default); noisy-truth: feed the tracker "
                             "ground truth with jitter, misses and false positives (scores the tracker alone)")
    parser.add_argument("--videos", type=int, default=24,
                        help="generated videos (default 24: about 90 tracks, so one identity switch moves the rate "
                             "per 20 tracks by about 0.2; a minute on 2 CPU cores)")
    parser.add_argument("--frames", type=int, default=60, help="frames per video (default 60)")
    parser.add_argument("--size", type=parse_size, default=(320, 240), help="video WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--seed", type=int, default=0, help="video i is generated from seed + i (default 0)")
    parser.add_argument("--stride", type=int, default=1, help="detector on every n-th frame (default 1)")
    parser.add_argument("--work-dir", type=Path, help="keep the generated videos, outputs and MOT files here")
    add_tracker_arguments(parser)
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perception.tracking_eval import (NoiseConfig, TrackingEvalConfig, evaluate_on_synthetic_videos,
                                          switches_per_20_tracks)
    from perception.video import VideoJobConfig

    try:
        job = VideoJobConfig(batch_size=args.batch_size, frame_stride=args.stride,
                             tracker=tracker_config_from_args(args))
        config = TrackingEvalConfig(videos=args.videos, frames=args.frames, size=(args.size[1], args.size[0]),
                                    seed=args.seed, job=job)
    except ValueError as error:
        raise CliError(str(error)) from error
    detector = build_detector(args) if args.detections == "model" else None
    started = time.perf_counter()
    keep = contextlib.nullcontext(args.work_dir) if args.work_dir else None
    with keep or tempfile.TemporaryDirectory(prefix="gdino-eval-tracking-") as work_dir:
        noise = NoiseConfig() if detector is None else None
        scores = evaluate_on_synthetic_videos(Path(work_dir), config, detector=detector, noise=noise)
    switches = switches_per_20_tracks(scores)
    result = {
        **scores.as_dict(),
        "id_switches_per_20_gt_tracks": round(switches, 3),
        "targets": {"IDF1": TARGET_IDF1, "id_switches_per_20_gt_tracks": TARGET_SWITCHES_PER_20_TRACKS},
        "meets_targets": scores.idf1 >= TARGET_IDF1 and switches <= TARGET_SWITCHES_PER_20_TRACKS,
        "detections": args.detections,
        "weights": detector.description if detector is not None else None,
        "videos": config.videos,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"HOTA {result['HOTA']:.3f}  IDF1 {result['IDF1']:.3f}  MOTA {result['MOTA']:.3f}  "
              f"id switches {scores.id_switches} over {scores.gt_tracks} tracks ({switches:.2f} per 20)  "
              f"[{args.detections}, {config.videos} videos x {config.frames} frames]")
    return 0
