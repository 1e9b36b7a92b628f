"""`gdino detect IMAGE... --prompt "a person . a red mug ."`: prints detections, one line per box (or JSON).

Every image is detected or refused on its own: a missing, unreadable, oversized or otherwise unusable
file gets one line ``gdino detect: error: PATH: why`` on stderr (and ``"error"`` in the JSON) while the
others are detected; the exit code is then EXIT_DAMAGED_INPUT (3). When no input is a file at all there is
nothing to detect: one line and EXIT_USAGE (2), before the model is loaded.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from perception.camera_messages import DEFAULT_MAX_PIXELS, ImageTooLargeError, MalformedImageError, decode_rgb
from perception.cli.errors import EXIT_DAMAGED_INPUT, EXIT_OK, CliError
from perception.cli.model_args import add_detector_arguments, build_detector
from perception.input_files import file_problem
from perception.streams import MultiStreamDetector


def register(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="detect the prompt's phrases in images")
    parser.add_argument("images", nargs="+", type=Path, help="image files: PNG, JPEG, TIFF, WebP, BMP, PNM")
    parser.add_argument("--prompt", required=True, help="phrases separated by ' . ', e.g. 'a person . a red mug .'")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text lines")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels, read from the file header before decoding "
                             f"(default {DEFAULT_MAX_PIXELS})")
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def read_rgb(path: Path, max_pixels: int):
    """An image file -> (H, W, 3) uint8 RGB. The file is mapped, not read, so its header is checked
    (camera_messages.decode_rgb: size limit, known format) before any large read or decode. Raises
    OSError or camera_messages.MalformedImageError."""
    return decode_rgb(np.memmap(path, dtype=np.uint8, mode="r"), max_pixels, what="file")


def run(args: argparse.Namespace) -> int:
    if args.max_pixels < 1:
        raise CliError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    problems = {index: file_problem(path, "an image file") for index, path in enumerate(args.images)}
    if all(problems.values()):
        raise CliError("no input is an image file: " + "; ".join(f"{p}: {problems[i]}" for i, p in enumerate(args.images)))
    detector = build_detector(args)
    batches = MultiStreamDetector(detector, tracker_config=None)  # refuses an image, not its whole batch
    try:
        batches.set_prompt(args.prompt)
    except ValueError as error:
        raise CliError(str(error)) from error
    if not args.json:
        print(f"weights: {detector.description}")
    records = []
    for start in range(0, len(args.images), detector.config.batch_size):
        indices = range(start, min(start + detector.config.batch_size, len(args.images)))
        found = _detect_files(batches, args.images, indices, problems, args.max_pixels)
        records += [_record(args.images[i], found.get(i), problems[i], args.json) for i in indices]
    if args.json:
        print(json.dumps({"weights": detector.description, "images": records}))
    refused = sum(problem is not None for problem in problems.values())
    if refused:
        print(f"gdino detect: {refused} of {len(args.images)} images refused", file=sys.stderr)
        return EXIT_DAMAGED_INPUT
    return EXIT_OK


def _detect_files(batches: MultiStreamDetector, paths: list[Path], indices: range, problems: dict, max_pixels: int
                  ) -> dict[int, list]:
    """Read and detect the files at ``indices`` as one batch: their objects by index. A file that cannot be
    read, or that the detector refuses, gets its reason in ``problems`` instead."""
    frames = []
    for index in indices:
        if problems[index] is None:
            try:
                frames.append((index, read_rgb(paths[index], max_pixels)))
            except ImageTooLargeError as error:
                problems[index] = f"{error} (see --max-pixels)"
            except (OSError, MalformedImageError) as error:
                problems[index] = str(error)
    if not frames:
        return {}
    result = batches.process([(str(index), rgb) for index, rgb in frames])
    found = {}
    for (index, _), objects, error in zip(frames, result.objects, result.errors):
        if error is None:
            found[index] = objects
        else:
            problems[index] = f"the detector refused it: {error}"
    return found


def _record(path: Path, objects, problem: str | None, as_json: bool) -> dict:
    """Report one image (its text lines now, or its error line) and return its JSON record."""
    if problem is not None:
        print(f"gdino detect: error: {path}: {problem}", file=sys.stderr)
        return {"path": str(path), "error": problem}
    if not as_json:
        print(f"{path}: {len(objects)} detections")
        for obj in objects:
            x0, y0, x1, y1 = (float(v) for v in obj.box_xyxy)
            print(f"  {obj.label or '?'}\t{obj.score:.3f}\t{x0:.1f} {y0:.1f} {x1:.1f} {y1:.1f}")
    return {"path": str(path), "detections": [
        {"label": obj.label, "score": round(float(obj.score), 4), "box_xyxy": [round(float(v), 1) for v in obj.box_xyxy]}
        for obj in objects]}
