"""`gdino video`: detect and track a prompt in a video file; write an annotated video and per-frame tracks.

Exit codes: 0 done; 1 a fault of ours (one line, -v for the traceback); 2 a problem the user can fix (one
line on stderr, nothing written); 3 the input was damaged or the detector refused frames (every other
frame was processed, the outputs are complete and the damage is reported with counts); 130 interrupted
by Ctrl-C or SIGTERM (the outputs hold the frames written so far, and the log says which).

Outputs are never written over the input, and an output that exists is refused unless --overwrite is
given. The video and the JSON lines hold the same frames whatever stops the run, SIGKILL included (a
kill can leave the video one frame ahead).
"""
from __future__ import annotations

import argparse
import copy
import importlib
import logging
from pathlib import Path

import yaml

from perception.cli.errors import EXIT_DAMAGED_INPUT, EXIT_OK, CliError
from perception.cli.model_args import add_detector_arguments, build_detector, tuned_settings_of

logger = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    return width, height


def register(subparsers) -> None:
    parser = subparsers.add_parser("video", help="detect and track a prompt in a video file",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="video file")
    parser.add_argument("--prompt", required=True, help='phrases separated by periods, e.g. "a person . a red mug ."')
    parser.add_argument("--output", help="annotated MP4 (default: <input stem>.tracked.mp4 in the current folder)")
    parser.add_argument("--jsonl", help="per-frame tracks, JSON Lines (default: the output path with .jsonl)")
    parser.add_argument("--mot", help="also write MOTChallenge text to this path")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs that already exist (never the input; default: refuse)")
    parser.add_argument("--start", type=float, default=0.0, help="start time in seconds (default 0)")
    parser.add_argument("--end", type=float, default=None, help="end time in seconds, exclusive (default: the end)")
    parser.add_argument("--stride", type=int, default=1,
                        help="run the detector on every n-th frame; the tracker predicts the others (default 1)")
    parser.add_argument("--output-size", type=parse_size, default=None,
                        help="output video WIDTHxHEIGHT, even numbers (default: the input size)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_tracker_arguments(parser)
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def add_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tracking")
    group.add_argument("--tracker-config",
                       help="YAML file of tracking settings (see perception/tracking/config.py; default: the settings "
                            "tuned for the weights, in their tuned_settings.yaml, else the tracker's defaults)")
    group.add_argument("--label-gating", choices=("phrase", "prompt"), default=None,
                       help="'prompt' lets a track keep its id when the detector wavers between the prompt's phrases")
    group.add_argument("--camera-motion", action="store_true", help="compensate camera motion (moving cameras)")
    group.add_argument("--continue-threshold", type=float, default=None,
                       help="detections scored from this up to the box threshold continue tracks, never start one "
                            "(ByteTrack's second association; 0 turns it off)")
    group.add_argument("--cross-phrase-iou", type=float, default=None,
                       help="with phrase gating, a detection may continue a track of another phrase that it overlaps "
                            "by more than this IoU (the detector wavering between phrases; 1: never)")
    group.add_argument("--reid-seconds", type=float, default=None,
                       help="seconds a lost track can be re-identified by a new track of its phrase nearby (0: off)")
    group.add_argument("--reid-appearance", type=float, default=None,
                       help="colour similarity (Bhattacharyya coefficient) a re-identified track needs with the lost "
                            "one (default 0.5; 0: position and size only)")


# tracker_config_from_args's default: the tracker settings tuned for --weights.
OF_WEIGHTS = "of --weights"


def tuned_tracking(weights: str | None) -> tuple[dict, str] | None:
    """(tracker settings, the file they are from) that the weights ``weights`` carry in their tuned_settings.yaml;
    None where they carry none."""
    settings = tuned_settings_of(weights)
    return (settings.tracking, str(settings.source)) if settings is not None and settings.tracking else None


def tracker_config_from_args(args: argparse.Namespace, tuned: tuple[dict, str] | None | str = OF_WEIGHTS):
    """The tracker settings of the options: --tracker-config's file, else the settings tuned for the detections'
    weights (``tuned``: (settings, where from) or None; by default those of --weights), each tracking option
    replacing one setting."""
    from perception.tracking.config import TrackerConfig
    from perception.weights import listed

    if tuned == OF_WEIGHTS:
        tuned = tuned_tracking(getattr(args, "weights", None))
    values = {}
    if args.tracker_config:
        try:
            values = yaml.safe_load(Path(args.tracker_config).read_text()) or {}
        except OSError as error:
            raise CliError(f"cannot read tracker config {args.tracker_config}: {error.strerror}") from error
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise CliError(f"tracker config {args.tracker_config} is not valid YAML: "
                           f"{getattr(error, 'problem', None) or error}{where}") from error
        if not isinstance(values, dict):
            raise CliError(f"tracker config {args.tracker_config} must be a mapping of settings")
    elif tuned is not None:
        values = copy.deepcopy(tuned[0])
        try:  # checked here, not where the file is read: detection alone runs without the tracking packages
            TrackerConfig.from_dict(copy.deepcopy(values))
        except (TypeError, ValueError) as error:
            raise CliError(f"{tuned[1]}: {error}") from error
        logger.info("tracking with the settings tuned for these weights (%s): %s; --tracker-config replaces them",
                    tuned[1], listed(values))
    for name in ("label_gating", "continue_threshold", "reid_seconds", "reid_appearance", "cross_phrase_iou"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.camera_motion:
        values["motion"] = {**values.get("motion", {}), "enabled": True}
    try:
        return TrackerConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise CliError(str(error)) from error


# Optional packages `gdino video` needs and `gdino detect` does not: checked first, so a machine without them
# (a GPU image with its own PyTorch, say) gets the install command instead of an ImportError.
VIDEO_REQUIREMENTS = (("av", "reading and writing video needs PyAV: pip install av"),
                      ("norfair", "tracking needs norfair: pip install norfair==2.3.0"))


def require_modules(requirements) -> None:
    for module, message in requirements:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise CliError(message) from error


def run(args: argparse.Namespace) -> int:
    require_modules(VIDEO_REQUIREMENTS)
    from perception.video.decode import VideoInputError, probe
    from perception.video.outputs import VideoOutputError, VideoOutputs

    output = args.output or f"{Path(args.input).stem}.tracked.mp4"
    outputs = VideoOutputs(output, args.jsonl or str(Path(output).with_suffix(".jsonl")), args.mot, args.overwrite)
    try:  # input and outputs first: a wrong path is refused in a second, before torch and the model load
        probe(args.input)
        outputs.check(args.input)
    except (VideoInputError, VideoOutputError) as error:
        raise CliError(str(error)) from error
    from perception.video.job import VideoJobConfig, process_video

    try:
        config = VideoJobConfig(batch_size=args.batch_size, frame_stride=args.stride, start_time=args.start,
                                end_time=args.end, output_size=args.output_size, tracker=tracker_config_from_args(args))
    except ValueError as error:
        raise CliError(str(error)) from error
    detector = build_detector(args)
    try:
        detector.set_prompt(args.prompt)  # refuses a prompt without phrases before any output exists
    except ValueError as error:
        raise CliError(str(error)) from error
    try:  # Ctrl-C and SIGTERM stop at a frame boundary inside process_video, which then raises KeyboardInterrupt
        summary = process_video(detector, args.prompt, args.input, outputs, config, progress=not args.quiet)
    except (VideoInputError, VideoOutputError) as error:  # e.g. the encoder refuses --output-size
        raise CliError(str(error)) from error
    if summary.frames == 0 and not summary.damage.damaged:
        raise CliError(f"no frame of {args.input} lies between {args.start} s and "
                       f"{'the end' if args.end is None else f'{args.end} s'}")
    written = ", ".join(path for _, path in outputs.named())
    print(f"{summary.frames} frames ({summary.detected_frames} detected) in {summary.seconds:.1f} s, "
          f"{summary.fps:.1f} frames/s -> " + (f"{written} ({summary.encoder})" if summary.frames else "no output"))
    # The damage itself was logged as a warning by process_video.
    if summary.refusals:
        logger.warning("%s; they are in the outputs without detections, marked \"refused\"",
                       summary.describe_refusals())
    return EXIT_DAMAGED_INPUT if summary.damage.damaged or summary.refusals else EXIT_OK
