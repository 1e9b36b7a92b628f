"""`gdino bag IN --prompt "a person ." --output OUT`: the node's pipeline over a recorded bag.

IN is a rosbag2 folder (mcap or sqlite3), a bare .mcap file, or a folder of .mcap files without
metadata.yaml. One image topic is read per camera (perception/bags/sources.py: of image_transport's
raw and compressed pair, the raw one unless --source compressed). OUT gets
``vision_msgs/Detection2DArray`` on ``<camera namespace>/detections`` (and, with --annotate, rgb8 images
on ``<namespace>/detections/image``), each at its image's bag timestamp with its header. OUT is built in
OUT.partial/ and appears only once finalized (perception/bags/output.py).

Exit codes: 0 done; 2 a problem the user can fix (one line on stderr, nothing written); 3 part of the
input could not be used (a damaged file, malformed images, frames the detector refused: every usable
frame was processed, OUT is complete, the damage is reported with counts); 130 Ctrl-C or SIGTERM (OUT is
complete up to the last frame written).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from perception.bags.output import STORAGES
from perception.bags.sources import SOURCES
from perception.camera_messages import DEFAULT_MAX_PIXELS
from perception.cli.errors import EXIT_DAMAGED_INPUT, EXIT_OK, CliError
from perception.cli.model_args import add_detector_arguments, build_detector
from perception.cli.video import add_tracker_arguments, tracker_config_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser("bag", help="detect and track in a rosbag2's camera topics, write the detections to a new bag",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="rosbag2 folder (mcap or sqlite3) or .mcap file")
    parser.add_argument("--output", type=Path, required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--prompt", required=True, help="phrases separated by ' . ', e.g. 'a person . a red mug .'")
    parser.add_argument("--topics", nargs="+", default=None,
                        help="camera topics to read, one per camera (default: every Image and CompressedImage topic, "
                             "one of each raw/compressed pair)")
    parser.add_argument("--source", choices=SOURCES, default="raw",
                        help="which topic of an image_transport pair (X and X/compressed) to read (default raw: lossless)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"images with more pixels are skipped unread (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="output storage (default mcap)")
    parser.add_argument("--annotate", action="store_true", help="also write annotated rgb8 images")
    parser.add_argument("--no-tracking", action="store_true", help="detections only; ids stay empty")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the summary")
    add_tracker_arguments(parser)
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perception.bags.damage import ReadDamage
    from perception.bags.inputs import BagInputError, open_bag
    from perception.bags.job import BagJobConfig, process_bag
    from perception.bags.messages import IMAGE_TYPES, bag_typestore
    from perception.bags.output import BagOutput, OutputPathError, check_output_path
    from perception.bags.sources import SourceChoiceError, choose_cameras
    from perception.streams import MultiStreamDetector

    if args.max_pixels < 1:
        raise CliError(f"--max-pixels must be at least 1, got {args.max_pixels}")
    try:  # every check that needs no model comes first
        check_output_path(args.output)
        bag = open_bag(args.input)
        probe = ReadDamage()
        topics = bag.topics(probe)
        if probe.damaged and not any(msgtype in IMAGE_TYPES for msgtype in topics.values()):
            print(f"gdino bag: {args.input} is damaged and no image topic could be read, nothing written: "
                  f"{probe.describe()}", file=sys.stderr)
            return EXIT_DAMAGED_INPUT
        cameras = choose_cameras(topics, args.topics, args.source)
    except (BagInputError, OutputPathError, SourceChoiceError) as error:
        raise CliError(str(error)) from error
    tracker = None if args.no_tracking else tracker_config_from_args(args)
    pipeline = MultiStreamDetector(build_detector(args), tracker)
    try:
        phrases = pipeline.set_prompt(args.prompt)
    except ValueError as error:
        raise CliError(str(error)) from error
    output = BagOutput(args.output, bag_typestore(), cameras, args.annotate, args.storage)
    try:
        summary = process_bag(pipeline, bag, output, BagJobConfig(cameras, args.batch_size, args.max_pixels,
                                                                       named=args.topics is not None))
    except OutputPathError as error:
        raise CliError(str(error)) from error
    report = {
        "output": str(args.output), "cameras": cameras, "phrases": phrases,
        "frames": dict(summary.frames), "detections": dict(summary.detections),
        "malformed": dict(summary.malformed), "refused": dict(summary.refused), "depth_set_aside": dict(summary.depth),
        "damage": summary.damage.as_dict() if summary.damage.damaged else None,
        "seconds": round(summary.seconds, 3),
        "fps": round(sum(summary.frames.values()) / summary.seconds, 3) if summary.seconds > 0 else None,
    }
    print(json.dumps(report) if args.json else _text(report, summary))
    return EXIT_DAMAGED_INPUT if summary.degraded else EXIT_OK


def _text(report: dict, summary) -> str:
    lines = [f"{camera}: {report['frames'].get(camera, 0)} frames, {report['detections'].get(camera, 0)} detections"
             for camera in report["cameras"]]
    if report["malformed"]:
        lines.append(f"skipped messages that are no usable image: {report['malformed']}")
    if report["refused"]:
        lines.append(f"frames the detector refused: {report['refused']}")
    if report["depth_set_aside"]:
        lines.append(f"depth images set aside (not camera pictures): {report['depth_set_aside']}")
    if report["damage"]:
        lines.append(f"damaged input: {summary.damage.describe()}")
    if not report["frames"]:
        read = sum(summary.damage.read.values())
        lines.append(f"no frame could be used ({read} image messages read); {report['output']} holds no detections")
    else:
        lines.append(f"wrote {report['output']} in {report['seconds']} s ({report['fps']} frames/s)")
    return "\n".join(lines)
