"""Opening what `gdino bag` reads: a rosbag2 folder (mcap or sqlite3), a bare .mcap file, or a folder of
.mcap files without metadata.yaml (what a recorder that was killed leaves behind).

Plain .mcap storage is read with :mod:`perception.bags.mcap_records`, which reads past damage; sqlite3
and compressed bags with ``rosbags``, which stops at the first damage. Either way a reader yields
``(topic, message type, bag timestamp ns, CDR bytes)`` in file order and records in a
:class:`~perception.bags.damage.ReadDamage` what it could not read: damage never raises.
"""
from __future__ import annotations

import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import yaml

from perception.bags.damage import ReadDamage
from perception.bags.mcap_records import RawMessage, file_messages, file_topics

logger = logging.getLogger(__name__)


class BagInputError(ValueError):
    """The input cannot be read as a bag at all (missing, not a bag); the message is one line."""


class McapInput:
    """.mcap files read in order; ``topics`` from metadata.yaml when given (then also the expected counts)."""

    def __init__(self, files: list[Path], topics: dict[str, str] | None = None,
                 expected: dict[str, int] | None = None) -> None:
        self.files, self._topics, self._expected = files, topics, expected

    def topics(self, damage: ReadDamage) -> dict[str, str]:
        """topic -> message type; damage met while looking for them (a file without summary) goes to ``damage``."""
        if self._topics is not None:
            return dict(self._topics)
        return {topic: msgtype for path in self.files for topic, msgtype in file_topics(path, damage).items()}

    def messages(self, topics: set[str], damage: ReadDamage) -> Iterator[RawMessage]:
        if self._expected is not None:
            damage.expected = Counter({t: n for t, n in self._expected.items() if t in topics})
        for path in self.files:
            if not path.is_file():
                damage.stops.append(f"{path.name} is missing")
                continue
            yield from file_messages(path, topics, damage, count_expected=self._expected is None)


class RosbagsInput:
    """A sqlite3 or compressed rosbag2 folder, read with ``rosbags`` (reading stops at the first damage)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def topics(self, damage: ReadDamage) -> dict[str, str]:
        from rosbags.rosbag2 import Reader, ReaderError

        try:
            with Reader(self.folder) as reader:
                return {c.topic: c.msgtype for c in reader.connections}
        except (ReaderError, sqlite3.DatabaseError) as error:
            damage.stop(f"{self.folder.name}: reading stopped", error)
            return {}

    def messages(self, topics: set[str], damage: ReadDamage) -> Iterator[RawMessage]:
        from rosbags.rosbag2 import Reader, ReaderError

        try:
            with Reader(self.folder) as reader:
                connections = [c for c in reader.connections if c.topic in topics]
                damage.expected = Counter({c.topic: c.msgcount for c in connections})
                for connection, timestamp, data in reader.messages(connections=connections):
                    damage.read[connection.topic] += 1
                    yield connection.topic, connection.msgtype, timestamp, data
        except (ReaderError, sqlite3.DatabaseError) as error:
            damage.stop(f"{self.folder.name}: reading stopped", error)



def open_bag(path: Path) -> McapInput | RosbagsInput:
    """The reader for ``path``; raises BagInputError when it is no bag at all. Does no reading of messages."""
    if not path.exists():
        raise BagInputError(f"input not found: {path}")
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return _from_metadata(path)
        files = sorted(path.glob("*.mcap"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
        if not files:
            raise BagInputError(f"{path} is a folder but no rosbag2 bag (no metadata.yaml, no .mcap file)")
        logger.warning("%s has no metadata.yaml (was its recording stopped abruptly?); reading %s",
                       path, ", ".join(p.name for p in files))
        return McapInput(files)
    if not path.is_file():
        raise BagInputError(f"{path} is neither a bag folder nor a file")
    if path.suffix != ".mcap":
        raise BagInputError(f"{path}: expected a rosbag2 folder or an .mcap file"
                            + (" (a .db3 file needs its bag folder with metadata.yaml)" if path.suffix == ".db3" else ""))
    return McapInput([path])


def _from_metadata(folder: Path) -> McapInput | RosbagsInput:
    metadata_path = folder / "metadata.yaml"
    try:
        info = yaml.safe_load(metadata_path.read_text())["rosbag2_bagfile_information"]
        plain_mcap = info["storage_identifier"] == "mcap" and not info.get("compression_mode")
        if not plain_mcap:
            return RosbagsInput(folder)
        files = [folder / name for name in info["relative_file_paths"]]
        entries = [(t["topic_metadata"]["name"], t["topic_metadata"]["type"], int(t["message_count"]))
                   for t in info["topics_with_message_count"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise BagInputError(f"{metadata_path} is not readable rosbag2 metadata ({type(error).__name__}: {error})") from error
    return McapInput(files, {name: msgtype for name, msgtype, _ in entries}, {name: count for name, _, count in entries})
