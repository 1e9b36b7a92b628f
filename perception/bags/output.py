"""The bag `gdino bag` writes: built under ``OUT.partial/`` and moved to ``OUT`` once finalized.

Whatever ends a run (the end of the input, an exception, Ctrl-C or SIGTERM), leaving the ``with`` block
closes the bag (index and metadata.yaml written) and moves it to ``OUT``: ``OUT`` is always a complete,
readable bag, up to the last frame written. A process killed outright (SIGKILL, power loss) leaves
``OUT.partial/`` and no ``OUT``. The running process holds an exclusive lock on ``OUT.partial/``; a later
run takes over a leftover that no process holds (its contents are deleted, with a warning) and refuses
one that a running process holds.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path

from perception.bags.messages import DETECTIONS_TYPE, IMAGE_TYPE, detection_array, rgb8_image
from perception.camera_messages import detections_topic
from perception.drawing import draw_objects

logger = logging.getLogger(__name__)

STORAGES = ("mcap", "sqlite3")


class OutputPathError(ValueError):
    """The output folder cannot be created as asked; the message is one line."""


def partial_path(path: Path) -> Path:
    """The folder the bag for ``path`` is built in, as ``<path>.partial/<path name>``."""
    return path.with_name(path.name + ".partial")


def check_output_path(path: Path) -> None:
    """Raise OutputPathError unless ``path`` can be created: it must not exist and its parent must."""
    if path.exists() or path.is_symlink():
        raise OutputPathError(f"{path} already exists; choose a new output folder")
    if not path.parent.is_dir():
        raise OutputPathError(f"cannot create {path}: the folder {path.parent} does not exist")


class BagOutput:
    """One Detection2DArray topic (and, with ``annotate``, one rgb8 image topic) per camera topic."""

    def __init__(self, path: Path, typestore, cameras: list[str], annotate: bool = False, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path, self.typestore, self.cameras, self.annotate, self.storage = path, typestore, cameras, annotate, storage
        self.frames_written = 0
        self._writer = None
        self._lock_fd: int | None = None

    def __enter__(self) -> BagOutput:
        from rosbags.rosbag2 import StoragePlugin, Writer

        check_output_path(self.path)
        partial = partial_path(self.path)
        self._lock_fd = claim_partial(partial)
        storage = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(partial / self.path.name, version=9, storage_plugin=storage)
        self._writer.open()
        add = self._writer.add_connection
        self._detections = {c: add(detections_topic(c), DETECTIONS_TYPE, typestore=self.typestore) for c in self.cameras}
        self._images = {c: add(detections_topic(c) + "/image", IMAGE_TYPE, typestore=self.typestore)
                        for c in self.cameras} if self.annotate else {}
        return self

    def write(self, camera: str, timestamp: int, header, rgb, objects) -> None:
        """One frame's objects (and annotated image) at bag ``timestamp`` (ns) with the image's ``header``."""
        serialize = self.typestore.serialize_cdr
        msg = detection_array(self.typestore, header, objects)
        self._writer.write(self._detections[camera], timestamp, serialize(msg, DETECTIONS_TYPE))
        if self.annotate:
            image = rgb8_image(self.typestore, header, draw_objects(rgb, objects))
            self._writer.write(self._images[camera], timestamp, serialize(image, IMAGE_TYPE))
        self.frames_written += 1

    def __exit__(self, *exc_info) -> None:
        partial = partial_path(self.path)
        try:
            self._writer.close()  # index and metadata.yaml: rosbags' own __exit__ would abort on an exception
            os.rename(partial / self.path.name, self.path)
            partial.rmdir()
        finally:
            os.close(self._lock_fd)


def claim_partial(partial: Path) -> int:
    """Create ``partial`` (or take over a leftover no process holds) and return the fd holding its lock."""
    partial.mkdir(exist_ok=True)
    fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise OutputPathError(f"{partial} is in use by another gdino bag writing the same output") from None
        raise
    leftovers = list(partial.iterdir())
    if leftovers:
        logger.warning("%s was left by a run that was killed: deleting it and starting again", partial)
    for child in leftovers:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return fd
