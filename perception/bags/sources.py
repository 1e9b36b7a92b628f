"""Choosing what `gdino bag` reads: one image topic per camera.

A camera is known by the topic its detections are written to (:func:`perception.camera_messages.detections_topic`),
so ``/cam/image_raw`` and image_transport's ``/cam/image_raw/compressed`` are one camera. The rule:

- topics named by the user are read as named; two of them that are one camera are refused;
- otherwise every ``sensor_msgs/Image`` and ``CompressedImage`` topic is read, except that of an
  image_transport pair (``X`` raw and ``X/compressed``) only one is: the raw one by default (lossless,
  no decoding), the compressed one with ``source="compressed"``; the choice is logged. Any other topics
  that are one camera (``image_raw`` beside ``image_rect``) are refused: the user names one.
"""
from __future__ import annotations

import logging

from perception.bags.messages import COMPRESSED_TYPE, IMAGE_TYPE, IMAGE_TYPES
from perception.camera_messages import COMPRESSED_SUFFIX, detections_topic

logger = logging.getLogger(__name__)

SOURCES = ("raw", "compressed")


class SourceChoiceError(ValueError):
    """The camera topics cannot be chosen as asked; the message is one line and says what to do."""


def choose_cameras(topics: dict[str, str], requested: list[str] | None, source: str = "raw") -> list[str]:
    """The image topics to read, one per camera. topics: topic -> message type of the whole bag."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    images = {topic: msgtype for topic, msgtype in topics.items() if msgtype in IMAGE_TYPES}
    if requested is not None:
        missing = [topic for topic in requested if topic not in images]
        if missing:
            raise SourceChoiceError(f"not image topics of this bag: {', '.join(missing)}; "
                                    f"image topics: {', '.join(sorted(images)) or 'none'}")
        chosen = list(dict.fromkeys(requested))
    elif not images:
        raise SourceChoiceError("the bag has no sensor_msgs/Image or CompressedImage topic")
    else:
        chosen = sorted(images)
        for raw, compressed in image_transport_pairs(images):
            keep, drop = (raw, compressed) if source == "raw" else (compressed, raw)
            chosen.remove(drop)
            logger.info("%s and %s are one camera: reading %s (%s)", raw, compressed, keep,
                        "raw is lossless; --source compressed reads the other" if source == "raw" else "--source compressed")
    _refuse_shared_cameras(chosen, images, named=requested is not None)
    return chosen


def image_transport_pairs(images: dict[str, str]) -> list[tuple[str, str]]:
    """(raw topic, compressed topic) for each raw Image topic whose ``/compressed`` CompressedImage is also there."""
    return [(topic, topic + COMPRESSED_SUFFIX) for topic, msgtype in sorted(images.items())
            if msgtype == IMAGE_TYPE and images.get(topic + COMPRESSED_SUFFIX) == COMPRESSED_TYPE]


def _refuse_shared_cameras(chosen: list[str], images: dict[str, str], named: bool) -> None:
    by_output: dict[str, list[str]] = {}
    for topic in chosen:
        by_output.setdefault(detections_topic(topic), []).append(topic)
    for output, topics in by_output.items():
        if len(topics) < 2:
            continue
        if named and len(topics) == 2 and tuple(sorted(topics)) in image_transport_pairs(images):
            raise SourceChoiceError(f"{' and '.join(sorted(topics))} are one camera (image_transport's raw and "
                                    "compressed topics): name only one in --topics, or leave out --topics and "
                                    "choose with --source raw|compressed")
        raise SourceChoiceError(f"{', '.join(topics)} would all write {output}: name the one to read with --topics")
