"""`gdino eval depth [--json]`: how far the 3D centres estimated from a detector's boxes and a registered depth
image are from the truth, on generated RGB-D scenes (perception.training.rgbd), beside the naive baseline (the
median depth of the whole box) on the same boxes and depth images.

Each scene is detected with a prompt naming its phrases and three absent ones; an object at least half visible
counts in `objects` when a detection of its phrase matches it (IoU >= 0.5) and in `missed` otherwise. Errors are
relative to the object's true distance from the camera; a failed estimate counts as an infinite error."""
from __future__ import annotations

import argparse
import json
import time

from perception.cli.errors import EXIT_OK, CliError
from perception.cli.model_args import add_detector_arguments, build_detector

# The targets for objects up to half hidden: the centre within 2% of the distance at the median,
# 5% at the 90th percentile.
TARGETS = {"median_relative_error": 0.02, "p90_relative_error": 0.05}
ERROR_KEYS = ("missing", "median_relative_error", "p90_relative_error", "median_error_m", "p90_error_m")


def register_eval(eval_subparsers) -> None:
    from perception.spatial import DEPTH_ENCODINGS

    parser = eval_subparsers.add_parser("depth", help="3D centre errors from detections and depth on generated "
                                                      "RGB-D scenes", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--scenes", type=int, default=200, help="generated RGB-D scenes at 240x320 (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="scene i is generated from seed + i (default 0)")
    parser.add_argument("--encoding", choices=DEPTH_ENCODINGS, default="16UC1",
                        help="the depth image as a driver publishes it: 16UC1 millimetres or 32FC1 metres "
                             "(default 16UC1)")
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perception.spatial.evaluation import DetectedBoxes, evaluate_on_generated_scenes
    from perception.training.train_bundled import VOCABULARY

    if args.scenes < 1:
        raise CliError(f"--scenes must be at least 1, got {args.scenes}")
    detector = build_detector(args)
    started = time.perf_counter()
    evaluation = evaluate_on_generated_scenes(args.scenes, first_seed=args.seed, encoding=args.encoding,
                                              boxes=DetectedBoxes(detector, VOCABULARY, prompt_seed=args.seed))
    ours, naive = evaluation["estimate"], evaluation["naive_box_median"]
    objects, missed = ours["objects"], evaluation["missed"]
    result = {
        "objects": objects,
        "missed": missed,
        "recall": round(objects / max(1, objects + missed), 4),
        **{key: ours[key] for key in ERROR_KEYS},
        "naive_box_median": {key: naive[key] for key in ERROR_KEYS},
        "targets": TARGETS,
        "meets_targets": objects > 0 and all(ours[key] <= bound for key, bound in TARGETS.items()),
        "scenes": args.scenes,
        "seed": args.seed,
        "encoding": args.encoding,
        "weights": detector.description,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
        return EXIT_OK

    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    for name, errors in (("estimate", result), ("naive box median", result["naive_box_median"])):
        print(f"{name:>16}: centre error median {percent(errors['median_relative_error'])}, "
              f"p90 {percent(errors['p90_relative_error'])} of the distance; failed estimates {errors['missing']}")
    print(f"{objects} objects matched, {missed} missed (recall {result['recall']}) in {args.scenes} scenes "
          f"[{args.encoding}]; targets median <= 2%, p90 <= 5%: {'met' if result['meets_targets'] else 'not met'}")
    return EXIT_OK
