"""What could not be read from a damaged bag, with counts: the report `gdino bag` gives for exit code 3."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class ReadDamage:
    """Filled while a bag is read; all zero for an intact bag. Counts are of the topics that were read."""

    read: Counter = field(default_factory=Counter)  # messages read, per topic
    # Messages the bag says it holds, per topic (its statistics or metadata.yaml); None when unknown.
    expected: Counter | None = field(default_factory=Counter)
    skipped_chunks: int = 0  # chunks that failed their CRC or could not be decompressed or parsed
    unknown_channel: int = 0  # messages whose channel record was lost with a damaged chunk
    stops: list[str] = field(default_factory=list)  # where and why reading a file ended early

    def skip_chunk(self, path: Path, offset: int, error: Exception) -> None:
        self.skipped_chunks += 1
        logger.warning("%s: skipped the chunk at byte %d (%s)", path.name, offset, _reason(error))

    def stop(self, where: str, error: Exception) -> None:
        """Reading a file ended early: ``where`` says which file and from where, ``error`` why."""
        self.stops.append(f"{where} ({_reason(error)})")

    @property
    def lost(self) -> int | None:
        """Messages the bag says it holds that could not be read; None when the bag does not say."""
        if self.expected is None:
            return None
        return sum(max(0, count - self.read[topic]) for topic, count in self.expected.items())

    @property
    def damaged(self) -> bool:
        return bool(self.skipped_chunks or self.unknown_channel or self.stops or self.lost)

    def describe(self) -> str:
        read, parts = sum(self.read.values()), []
        if self.expected is None:
            parts.append(f"{read} messages read, how many were lost is unknown (no index or statistics)")
        elif read or self.expected:
            parts.append(f"{read} of {sum(self.expected.values())} messages read ({self.lost} lost)")
        if self.skipped_chunks:
            parts.append(f"{self.skipped_chunks} damaged chunks skipped")
        if self.unknown_channel:
            parts.append(f"{self.unknown_channel} messages of channels lost with a damaged chunk")
        return "; ".join(parts + self.stops)

    def as_dict(self) -> dict:
        return {"messages_read": sum(self.read.values()), "messages_lost": self.lost,
                "skipped_chunks": self.skipped_chunks, "unknown_channel": self.unknown_channel, "stops": self.stops}


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
