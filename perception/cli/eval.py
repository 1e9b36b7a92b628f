"""`gdino eval <what> [--json]`: evaluations that print metrics. Each module adds its own parser."""
from __future__ import annotations

import argparse
import json

from perception.cli.errors import CliError
from perception.cli.model_args import (
    add_detector_arguments,
    build_compared_detector,
    precision_report,
    tuned_settings_of,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluations (print metrics; --json for one JSON object)")
    evaluations = parser.add_subparsers(dest="evaluation", required=True)
    detection = evaluations.add_parser("detection", help="COCO AP on held-out generated scenes")
    detection.add_argument("--json", action="store_true", help="print one JSON object")
    detection.add_argument("--scenario", choices=("default", "crowd"), default="default",
                           help="default: scenes of 1-6 objects (AP, absent-only prompts); crowd: crowd images of "
                                "6-15 instances of one phrase at 240x320 (recall and precision at the box threshold, AP)")
    detection.add_argument("--images", type=int, help="held-out scenes (default 500; crowd 100)")
    detection.add_argument("--size", type=int, default=256, help="default scene side in pixels (default 256)")
    detection.add_argument("--seed", type=int, default=0, help="crowd: offset of the held-out crowd seeds (default 0)")
    add_detector_arguments(detection)
    detection.set_defaults(run=run_detection)
    from perception.cli.eval_depth import register_eval as register_depth_eval
    from perception.cli.eval_tracking import register_eval

    register_eval(evaluations)
    register_depth_eval(evaluations)


def run_detection(args: argparse.Namespace) -> int:
    from perception.training.train_bundled import VOCABULARY

    if args.images is not None and args.images < 1:
        raise CliError(f"--images must be at least 1, got {args.images}")
    if args.scenario == "crowd":
        from perception.eval.crowd_detection import evaluate_on_crowd_scenes

        # recall is counted at the detector's threshold, AP below it
        detector, agreement = build_compared_detector(args)
        metrics = evaluate_on_crowd_scenes(detector, VOCABULARY, args.images or 100, seed=args.seed)
    else:
        from perception.eval.grounding import evaluate_on_generated_scenes
        from perception.postprocess import PostprocessConfig

        # Absent-only prompts are judged at the threshold the weights run at: their tuned one, else the default.
        tuned = tuned_settings_of(args.weights)
        absent_only_threshold = (tuned.postprocess if tuned else {}).get("box_threshold",
                                                                        PostprocessConfig.box_threshold)
        if args.box_threshold is None:
            args.box_threshold = 0.05  # AP ranks every detection; a high threshold would cut the curve short
        detector, agreement = build_compared_detector(args)
        metrics = evaluate_on_generated_scenes(detector, VOCABULARY, args.images or 500, args.size,
                                               absent_only_threshold=absent_only_threshold)
    result = {"weights": detector.description, "scenario": args.scenario, **metrics,
              **precision_report(detector, agreement)}
    print(json.dumps(result) if args.json else "  ".join(f"{k}: {v}" for k, v in result.items()))
    return 0
