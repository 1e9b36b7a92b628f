"""`gdino detect IMAGE... --prompt "a person . a red mug ."`: prints detections, one line per box (or JSON)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from perception.cli.errors import CliError
from perception.cli.model_args import add_detector_arguments, build_detector


def register(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="detect the prompt's phrases in images")
    parser.add_argument("images", nargs="+", type=Path, help="image files (any format OpenCV reads)")
    parser.add_argument("--prompt", required=True, help="phrases separated by ' . ', e.g. 'a person . a red mug .'")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text lines")
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def read_rgb(path: Path):
    import cv2

    if not path.is_file():
        raise CliError(f"{path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CliError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def run(args: argparse.Namespace) -> int:
    images = [read_rgb(path) for path in args.images]
    detector = build_detector(args)
    try:
        detector.set_prompt(args.prompt)
    except ValueError as error:
        raise CliError(str(error)) from error
    results = detector.detect(images)
    if args.json:
        print(json.dumps({
            "weights": detector.description,
            "images": [
                {"path": str(path), "detections": [
                    {"label": label, "score": round(float(score), 4), "box_xyxy": [round(float(v), 1) for v in box]}
                    for box, score, label in zip(result.boxes, result.scores, result.labels)]}
                for path, result in zip(args.images, results)],
        }))
        return 0
    print(f"weights: {detector.description}")
    for path, result in zip(args.images, results):
        print(f"{path}: {len(result)} detections")
        for box, score, label in zip(result.boxes, result.scores, result.labels):
            x0, y0, x1, y1 = (float(v) for v in box)
            print(f"  {label or '?'}\t{score:.3f}\t{x0:.1f} {y0:.1f} {x1:.1f} {y1:.1f}")
    return 0
