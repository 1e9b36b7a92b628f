"""Reading an .mcap file with the ``mcap`` package, record by record, so that damage costs only what it hits.

A file with an intact summary (chunk index, channels, statistics) is read chunk by chunk through that
index: a chunk that fails its CRC or cannot be decompressed or parsed is skipped and counted, and the
next chunk is read. A file without a readable summary (cut short, or its end damaged) is read as a stream
from the start up to the first record that cannot be read; damaged chunks on the way are skipped the same
way. The messages lost are known from the file's statistics when it has them.
"""
from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import zstandard
from mcap.exceptions import McapError
from mcap.reader import SeekingReader
from mcap.records import Channel, Chunk, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.summary import Summary

from perception.bags.damage import ReadDamage

logger = logging.getLogger(__name__)

# What the mcap package raises on damaged bytes: McapError (bad magic, end of file, absurd record length),
# ValueError (CRC mismatch, bad UTF-8 in a name), struct.error (a field cut short), ZstdError and
# RuntimeError (zstd or lz4 data that does not decompress), OSError (a seek before the start).
DAMAGE_ERRORS = (McapError, ValueError, struct.error, zstandard.ZstdError, RuntimeError, OSError)

# A message of the file: (topic, message type such as "sensor_msgs/msg/Image", log time in ns, CDR bytes).
RawMessage = tuple[str, str, int, bytes]


def read_summary(path: Path) -> Summary | None:
    """The file's summary section, or None when it has none or it cannot be read (a file cut short)."""
    with path.open("rb") as file:
        try:
            return SeekingReader(file).get_summary()
        except DAMAGE_ERRORS:
            return None


def _ros2_topics(schemas: dict[int, Schema], channels: dict[int, Channel]) -> dict[str, str]:
    """topic -> ROS 2 message type, for the CDR channels with a schema."""
    return {c.topic: schemas[c.schema_id].name for c in channels.values()
            if c.message_encoding == "cdr" and c.schema_id in schemas}


def file_topics(path: Path, damage: ReadDamage) -> dict[str, str]:
    """topic -> message type of every CDR channel: from the summary, else from the readable records (then
    the damage met on the way is recorded in ``damage``)."""
    summary = read_summary(path)
    if summary is not None:
        return _ros2_topics(summary.schemas, summary.channels)
    walk = _RecordWalk(path, None, damage)
    for _ in walk.messages(set()):
        pass
    return _ros2_topics(walk.schemas, walk.channels)


def file_messages(path: Path, topics: set[str], damage: ReadDamage, count_expected: bool) -> Iterator[RawMessage]:
    """The messages of ``topics`` in file order; what cannot be read is recorded in ``damage``.

    count_expected: add the file's per-topic message counts (its statistics) to ``damage.expected``, or
    mark them unknown when the file has none.
    """
    summary = read_summary(path)
    if count_expected:
        if summary is None or summary.statistics is None:
            damage.expected = None
        elif damage.expected is not None:
            for channel_id, count in summary.statistics.channel_message_counts.items():
                channel = summary.channels.get(channel_id)
                if channel is not None and channel.topic in topics:
                    damage.expected[channel.topic] += count
    yield from _RecordWalk(path, summary, damage).messages(topics)


class _RecordWalk:
    """One pass over one file's records, keeping the schemas and channels met on the way."""

    def __init__(self, path: Path, summary: Summary | None, damage: ReadDamage) -> None:
        self.path, self.summary, self.damage = path, summary, damage
        self.schemas: dict[int, Schema] = dict(summary.schemas) if summary else {}
        self.channels: dict[int, Channel] = dict(summary.channels) if summary else {}

    def messages(self, topics: set[str]) -> Iterator[RawMessage]:
        records = self._indexed_chunks() if self.summary and self.summary.chunk_indexes else self._stream()
        for record in records:
            if isinstance(record, Schema):
                self.schemas[record.id] = record
            elif isinstance(record, Channel):
                self.channels[record.id] = record
            elif isinstance(record, Message):
                channel = self.channels.get(record.channel_id)
                if channel is None or channel.schema_id not in self.schemas:
                    self.damage.unknown_channel += 1  # its channel record was in a chunk that was lost
                elif channel.topic in topics:
                    self.damage.read[channel.topic] += 1
                    yield channel.topic, self.schemas[channel.schema_id].name, record.log_time, record.data

    def _indexed_chunks(self) -> Iterator:
        with self.path.open("rb") as file:
            for index in sorted(self.summary.chunk_indexes, key=lambda i: i.chunk_start_offset):
                try:
                    file.seek(index.chunk_start_offset)
                    chunk = next(StreamReader(file, skip_magic=True, emit_chunks=True).records)
                    if not isinstance(chunk, Chunk):
                        raise McapError(f"expected a chunk record, found {type(chunk).__name__}")
                    records = breakup_chunk(chunk, validate_crc=True)
                except DAMAGE_ERRORS as error:
                    self.damage.skip_chunk(self.path, index.chunk_start_offset, error)
                    continue
                yield from records

    def _stream(self) -> Iterator:
        size = self.path.stat().st_size
        with self.path.open("rb") as file:
            position = 0
            try:
                for record in StreamReader(file, emit_chunks=True).records:
                    if isinstance(record, Chunk):
                        try:
                            yield from breakup_chunk(record, validate_crc=True)
                        except DAMAGE_ERRORS as error:
                            self.damage.skip_chunk(self.path, position, error)
                    else:
                        yield record
                    position = file.tell()
            except DAMAGE_ERRORS as error:
                self.damage.stop(f"{self.path.name} unreadable from byte {position} of {size}", error)
