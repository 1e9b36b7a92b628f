"""Command-line options that choose and configure the detector, shared by the subcommands that run it."""
from __future__ import annotations

import argparse
import dataclasses
import logging

from perception.cli.errors import CliError

logger = logging.getLogger(__name__)

DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")
DTYPE_HELP = ("model precision; auto (default): float16 on a CUDA GPU, bfloat16 on a CPU with bfloat16 instructions "
              "where a check against float32 passes, else float32 (the choice and its reason are logged)")


def add_detector_arguments(parser: argparse.ArgumentParser, default_batch_size: int = 4) -> None:
    """--weights, --preset, thresholds, device, dtype, batch size and the model's input size."""
    group = parser.add_argument_group("model")
    group.add_argument("--weights", default=None,
                       help="checkpoint directory, original .pth file, hub id, bundled:crowds (the bundled model "
                            "trained longer on crowds of one phrase, with its tuned settings), bundled (the first "
                            "bundled model) or random:tiny (default: bundled:crowds)")
    group.add_argument("--preset", default=None, help="architecture preset for an original .pth file")
    group.add_argument("--box-threshold", type=float, default=None,
                       help="minimum box score (default: the weights' tuned setting, else 0.35)")
    group.add_argument("--text-threshold", type=float, default=None, help="minimum phrase score (default 0.25)")
    group.add_argument("--nms-iou", type=float, default=None,
                       help="per-phrase non-maximum suppression: drop a box that overlaps a higher-scored box of "
                            "the same phrase by more than this IoU, in (0, 1] (default: keep every box)")
    group.add_argument("--present-phrase-threshold", type=float, default=None,
                       help="keep a box scored above this (but not above the box threshold) when a box of its phrase "
                            "in the image passes the box threshold and it overlaps no kept box of its phrase by more "
                            "than --present-phrase-iou; 1 turns it off (default 0.25)")
    group.add_argument("--present-phrase-iou", type=float, default=None,
                       help="the overlap that drops such a box, in (0, 1] (default 0.5)")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    group.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    group.add_argument("--batch-size", type=int, default=default_batch_size,
                       help=f"frames per model call (default {default_batch_size})")
    group.add_argument("--compile", action="store_true",
                       help="run the model under torch.compile: faster for a fixed frame size, after a first call "
                            "that compiles (seconds to minutes); each new input size compiles again")
    group.add_argument("--shortest-edge", type=int, default=None,
                       help="resize frames so their short side is this many pixels before the model "
                            "(default: what the checkpoint asks for, else 800)")
    group.add_argument("--longest-edge", type=int, default=None,
                       help="cap on the long side after resizing (default: the checkpoint's, else 1333)")


def given(options: dict) -> dict:
    """The options the user gave (those not None)."""
    return {name: value for name, value in options.items() if value is not None}


def tuned_settings_of(weights: str | None):
    """The tuned settings of the weights the options name (perception.weights.tuned_settings), or None; a
    broken file is a CliError."""
    from perception.weights import WeightsError, tuned_settings

    try:
        return tuned_settings(weights)
    except WeightsError as error:
        raise CliError(str(error)) from error


def postprocess_settings(args: argparse.Namespace, announce: bool = True) -> dict:
    """The postprocessing fields to set: the weights' tuned settings (their tuned_settings.yaml), each replaced
    by the option when given; with ``announce``, logs which tuned settings apply."""
    from perception.weights import TUNED_POSTPROCESS_KEYS, listed

    options = given({name: getattr(args, name, None) for name in TUNED_POSTPROCESS_KEYS})
    tuned = tuned_settings_of(args.weights)
    if tuned is None:
        return options
    kept = {name: value for name, value in tuned.postprocess.items() if name not in options}
    if announce and kept:
        logger.info("using the settings tuned for these weights (%s): %s; the options of the same names replace "
                    "them", tuned.source, listed(kept))
    return {**tuned.postprocess, **options}


def build_detector(args: argparse.Namespace, dtype: str | None = None):
    """The detector the options describe (in ``dtype`` instead of --dtype when given; a float32 twin for
    comparison then, which says nothing of the settings it shares); user-fixable problems become one-line
    CliErrors."""
    from perception.detector import DetectorConfig, GroundingDinoDetector
    from perception.postprocess import PostprocessConfig
    from perception.weights import WeightsError

    try:
        sizes = {"shortest_edge": args.shortest_edge, "longest_edge": args.longest_edge}
        # A size option replaces that size only; the other stays the checkpoint's own.
        postprocess = dataclasses.replace(PostprocessConfig(), **postprocess_settings(args, announce=dtype is None))
        config = DetectorConfig(preprocess_overrides=given(sizes), postprocess=postprocess, batch_size=args.batch_size,
                                # absent from option sets copied before --compile existed (gdino label's)
                                compile=getattr(args, "compile", False))
        return GroundingDinoDetector.from_pretrained(args.weights, args.preset, device=args.device,
                                                     dtype=dtype or args.dtype, config=config)
    except (WeightsError, ValueError, RuntimeError) as error:
        raise CliError(str(error)) from error


def build_compared_detector(args: argparse.Namespace):
    """(detector, agreement): the detector the options describe and, when it does not run in float32, the
    same detector in float32 run beside it on every call (perception.eval.agreement.ComparedDetector), whose
    ``agreement`` the evaluations print; None for a float32 detector, which is its own baseline."""
    import torch

    from perception.eval.agreement import ComparedDetector

    detector = build_detector(args)
    if detector.dtype == torch.float32:
        return detector, None
    compared = ComparedDetector(detector, build_detector(args, dtype="float32"))
    return compared, compared.agreement


def precision_report(detector, agreement) -> dict:
    """The keys evaluations print about precision: dtype, agreement_with_float32 (None for float32 itself),
    max_score_difference_with_float32, float32_detections, agreement_counted_from, and the detector's seconds
    in its dtype and in float32 on the same calls."""
    dtype = str(detector.dtype).removeprefix("torch.")
    if agreement is None:
        return {"dtype": dtype, "agreement_with_float32": None}
    seconds = {dtype: round(detector.seconds["other"], 2), "float32": round(detector.seconds["float32"], 2)}
    return {"dtype": dtype, **agreement.as_dict(), "detector_seconds": seconds}
