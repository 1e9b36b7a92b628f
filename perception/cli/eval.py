"""`gdino eval <what> [--json]`: evaluations that print metrics. Each module adds its own parser."""
from __future__ import annotations

import argparse
import json

from perception.cli.model_args import add_detector_arguments, build_detector


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluations (print metrics; --json for one JSON object)")
    evaluations = parser.add_subparsers(dest="evaluation", required=True)
    detection = evaluations.add_parser("detection", help="COCO AP on held-out generated scenes")
    detection.add_argument("--json", action="store_true", help="print one JSON object")
    detection.add_argument("--images", type=int, default=500, help="held-out scenes (default 500)")
    detection.add_argument("--size", type=int, default=256, help="scene side in pixels (default 256)")
    add_detector_arguments(detection)
    detection.set_defaults(run=run_detection)
    from perception.cli.eval_tracking import register_eval

    register_eval(evaluations)


def run_detection(args: argparse.Namespace) -> int:
    from perception.eval.grounding import evaluate_on_generated_scenes
    from perception.training.train_bundled import VOCABULARY

    if args.box_threshold is None:
        args.box_threshold = 0.05  # AP ranks every detection; a high threshold would cut the curve short
    detector = build_detector(args)
    metrics = evaluate_on_generated_scenes(detector, VOCABULARY, args.images, args.size)
    result = {"weights": detector.description, "images": args.images, **metrics}
    print(json.dumps(result) if args.json else "  ".join(f"{k}: {v}" for k, v in result.items()))
    return 0
