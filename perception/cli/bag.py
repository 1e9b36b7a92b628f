"""`gdino bag IN_BAG --prompt "a person ." --output OUT_BAG`: the node's pipeline over a recorded bag.

Reads the camera topics of a rosbag2 (sqlite3 or mcap, the bag directory with its metadata.yaml) with
the pure-Python ``rosbags`` library, runs the detector and one tracker per camera exactly as the ROS
node does (:class:`perception.streams.MultiStreamDetector`), and writes a new bag with
``vision_msgs/Detection2DArray`` on ``<camera namespace>/detections`` (and, with ``--annotate``, rgb8
images on ``<namespace>/detections/image``), each message at its image's original bag timestamp and
with the image's header. vision_msgs is registered with rosbags from the .msg files in
``perception/interfaces``; no ROS installation is needed.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np

from perception.cli.errors import CliError
from perception.cli.model_args import add_detector_arguments, build_detector

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
VISION_MSGS_DIR = Path(__file__).resolve().parents[1] / "interfaces" / "vision_msgs" / "msg"
STORAGES = ("mcap", "sqlite3")


def register(subparsers) -> None:
    parser = subparsers.add_parser("bag", help="detect and track in a rosbag2's camera topics, write the detections to a new bag")
    parser.add_argument("input", type=Path, help="rosbag2 directory (with metadata.yaml), sqlite3 or mcap storage")
    parser.add_argument("--output", type=Path, required=True, help="bag directory to create (must not exist)")
    parser.add_argument("--prompt", required=True, help="phrases separated by ' . ', e.g. 'a person . a red mug .'")
    parser.add_argument("--topics", nargs="+", default=None,
                        help="camera topics to process (default: every Image and CompressedImage topic)")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="output storage (default mcap)")
    parser.add_argument("--annotate", action="store_true", help="also write annotated rgb8 images")
    parser.add_argument("--no-tracking", action="store_true", help="detections only; ids stay empty")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the summary")
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def bag_typestore():
    """ROS 2 Jazzy's message types plus vision_msgs (upstream 4.x layout) from our .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(VISION_MSGS_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def detection_array(typestore, header, objects):
    """Objects of one frame -> rosbags ``Detection2DArray`` (same fields as the node's messages)."""
    types = typestore.types
    pose = types["geometry_msgs/msg/PoseWithCovariance"](
        pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=np.zeros(36, np.float64),
    )
    detections = []
    for obj in objects:
        x0, y0, x1, y1 = (float(v) for v in obj.box_xyxy)
        hypothesis = types["vision_msgs/msg/ObjectHypothesis"](class_id=obj.label, score=float(obj.score))
        centre = types["vision_msgs/msg/Pose2D"](
            position=types["vision_msgs/msg/Point2D"](x=(x0 + x1) / 2.0, y=(y0 + y1) / 2.0), theta=0.0
        )
        detections.append(types["vision_msgs/msg/Detection2D"](
            header=header,
            results=[types["vision_msgs/msg/ObjectHypothesisWithPose"](hypothesis=hypothesis, pose=pose)],
            bbox=types["vision_msgs/msg/BoundingBox2D"](center=centre, size_x=x1 - x0, size_y=y1 - y0),
            id=obj.object_id,
        ))
    return types[DETECTIONS_TYPE](header=header, detections=detections)


def _camera_connections(reader, topics: list[str] | None):
    images = {c.topic: c for c in reader.connections if c.msgtype in IMAGE_TYPES}
    if topics is None:
        if not images:
            raise CliError("the bag has no sensor_msgs/Image or CompressedImage topic")
        return list(images.values())
    missing = [topic for topic in topics if topic not in images]
    if missing:
        raise CliError(f"not image topics of this bag: {', '.join(missing)}; image topics: {', '.join(sorted(images)) or 'none'}")
    return [images[topic] for topic in topics]


class _Output:
    """The output bag's connections and writes, one per camera topic."""

    def __init__(self, writer, typestore, cameras: list[str], annotate: bool) -> None:
        from perception.camera_messages import detections_topic

        self.writer, self.typestore, self.annotate = writer, typestore, annotate
        self.detections = {c: writer.add_connection(detections_topic(c), DETECTIONS_TYPE, typestore=typestore) for c in cameras}
        self.images = {
            c: writer.add_connection(detections_topic(c) + "/image", "sensor_msgs/msg/Image", typestore=typestore)
            for c in cameras
        } if annotate else {}

    def write(self, camera: str, timestamp: int, header, rgb: np.ndarray, objects) -> None:
        from perception.camera_messages import rgb8_fields
        from perception.drawing import draw_objects

        msg = detection_array(self.typestore, header, objects)
        self.writer.write(self.detections[camera], timestamp, self.typestore.serialize_cdr(msg, DETECTIONS_TYPE))
        if self.annotate:
            image = self.typestore.types["sensor_msgs/msg/Image"](header=header, **rgb8_fields(draw_objects(rgb, objects)))
            self.writer.write(self.images[camera], timestamp, self.typestore.serialize_cdr(image, "sensor_msgs/msg/Image"))


def process_bag(args: argparse.Namespace) -> dict:
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    from perception.camera_messages import MalformedImageError, compressed_to_rgb, image_to_rgb
    from perception.streams import MultiStreamDetector
    from perception.tracking_config import TrackerConfig

    if not (args.input / "metadata.yaml").is_file():
        raise CliError(f"{args.input}: not a rosbag2 directory (no metadata.yaml; a bare .mcap file needs its bag folder)")
    if args.output.exists():
        raise CliError(f"{args.output} already exists; choose a new output directory")
    typestore = bag_typestore()
    pipeline = MultiStreamDetector(build_detector(args), None if args.no_tracking else TrackerConfig())
    try:
        phrases = pipeline.set_prompt(args.prompt)
    except ValueError as error:
        raise CliError(str(error)) from error
    frames, detections, malformed = Counter(), Counter(), Counter()
    start = time.perf_counter()
    with AnyReader([args.input], default_typestore=typestore) as reader:
        connections = _camera_connections(reader, args.topics)
        cameras = [c.topic for c in connections]
        storage = StoragePlugin.MCAP if args.storage == "mcap" else StoragePlugin.SQLITE3
        with Writer(args.output, version=9, storage_plugin=storage) as writer:
            output = _Output(writer, typestore, cameras, args.annotate)
            batch = []  # (camera, bag timestamp, header, rgb)

            def flush() -> None:
                result = pipeline.process([(camera, rgb) for camera, _, _, rgb in batch])
                for (camera, timestamp, header, rgb), objects in zip(batch, result.objects):
                    output.write(camera, timestamp, header, rgb, objects)
                    frames[camera] += 1
                    detections[camera] += len(objects)
                batch.clear()

            for connection, timestamp, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                decode = compressed_to_rgb if connection.msgtype.endswith("CompressedImage") else image_to_rgb
                try:
                    batch.append((connection.topic, timestamp, msg.header, decode(msg)))
                except MalformedImageError as error:
                    malformed[error.kind] += 1
                    if malformed[error.kind] == 1:
                        logger.warning("%s at %d: skipped (%s): %s", connection.topic, timestamp, error.kind, error)
                if len(batch) >= args.batch_size:
                    flush()
            if batch:
                flush()
    seconds = time.perf_counter() - start
    return {
        "output": str(args.output),
        "phrases": phrases,
        "frames": dict(frames),
        "detections": dict(detections),
        "malformed": dict(malformed),
        "seconds": round(seconds, 3),
        "fps": round(sum(frames.values()) / seconds, 3) if seconds > 0 else None,
    }


def run(args: argparse.Namespace) -> int:
    summary = process_bag(args)
    if args.json:
        print(json.dumps(summary))
    else:
        for camera, count in summary["frames"].items():
            print(f"{camera}: {count} frames, {summary['detections'][camera]} detections")
        if summary["malformed"]:
            print(f"skipped malformed messages: {summary['malformed']}")
        print(f"wrote {summary['output']} in {summary['seconds']} s ({summary['fps']} frames/s)")
    return 1 if summary["malformed"] else 0
