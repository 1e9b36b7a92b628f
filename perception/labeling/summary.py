"""``summary.json``: each input's outcome, and what lets a rerun skip the inputs already done.

Outcomes: ``done``; ``damaged`` (processed, but part of it could not be used: ``damage`` has the counts);
``failed`` (``reason`` says why: unreadable, or its worker died more often than retries allow);
``skipped`` (done or damaged by an earlier run with the same settings: ``previous`` says which, and the
earlier counts are kept); ``interrupted`` (the run was stopped before it finished); ``pending`` (not
finished when the file was written: the run is still going, or was killed outright). The file is replaced
atomically after every input, so whatever stops the run leaves a valid one.

A rerun skips an input when the earlier record is done, damaged or skipped, its size, modification time
and settings hash are the same, and its output folder is there.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perception.labeling.inputs import LabelInput

OUTCOMES = ("done", "damaged", "failed", "skipped", "interrupted", "pending")
FINISHED = ("done", "damaged", "skipped")  # the input's outputs are complete and in the dataset
SUMMARY_NAME = "summary.json"


@dataclass
class InputRecord:
    """One input's line in summary.json (``outputs``: its folder, relative to the run's output folder)."""

    input: str
    kind: str
    key: str
    size: int
    mtime_ns: int
    settings_hash: str
    outcome: str
    outputs: str = ""
    frames: int = 0
    detections: int = 0
    seconds: float = 0.0  # worker time, all chunks together
    attempts: int = 0
    reason: str = ""  # why it failed, or in words what the damage was
    damage: dict = field(default_factory=dict)  # counts, by kind of damage
    previous: str = ""  # the outcome a skipped input had in the run that did it

    @property
    def damaged(self) -> bool:
        """Whether the outputs lack part of the input (so the command exits with code 3)."""
        return self.outcome in ("damaged", "failed") or (self.outcome == "skipped" and self.previous == "damaged")


def read_summary(folder: Path) -> dict[str, InputRecord]:
    """The records of an earlier run in ``folder`` by input path; none when it has no summary yet.
    Raises ValueError when the file is there but unreadable (the user decides what to do with it)."""
    path = folder / SUMMARY_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {item["input"]: InputRecord(**item) for item in data["inputs"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a summary of gdino label ({type(error).__name__}: {error}); "
                         "move it away to start afresh") from error


def skippable(previous: InputRecord | None, item: LabelInput, fingerprint: tuple[int, int], settings_hash: str,
              folder: Path) -> bool:
    """Whether ``item`` was finished by an earlier run with these settings and has not changed since."""
    return (previous is not None and previous.outcome in FINISHED and previous.settings_hash == settings_hash
            and (previous.size, previous.mtime_ns) == fingerprint and previous.key == item.key
            and bool(previous.outputs) and (folder / previous.outputs).is_dir())


def skipped(previous: InputRecord) -> InputRecord:
    """The record of an input this run skips: the earlier counts, outcome ``skipped``, no new attempt."""
    earlier = previous.previous if previous.outcome == "skipped" else previous.outcome
    return InputRecord(**{**asdict(previous), "outcome": "skipped", "previous": earlier, "attempts": 0})


def write_summary(folder: Path, settings: dict, settings_hash: str, records: list[InputRecord]) -> None:
    """Replace ``folder/summary.json`` atomically (a temporary file renamed over it)."""
    counts = {outcome: sum(r.outcome == outcome for r in records) for outcome in OUTCOMES}
    data = {"settings": settings, "settings_hash": settings_hash, "counts": counts,
            "frames": sum(r.frames for r in records), "detections": sum(r.detections for r in records),
            "inputs": [asdict(record) for record in records]}
    temporary = folder / f".{SUMMARY_NAME}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, folder / SUMMARY_NAME)
