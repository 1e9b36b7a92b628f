"""Where a video run's outputs go, checked before anything is written (only ``os``: the command checks
them before it loads the model).

An output is never the input (the same file by ``os.path.samefile``, so links count) and never another
output; its folder must exist; an output that already exists is refused unless ``overwrite`` is set,
and then it is replaced in place. Outputs are written in place, not under a temporary name, so that a
run killed outright leaves what it wrote under the names asked for (perception.video.write).
"""
from __future__ import annotations

import os
from dataclasses import dataclass


class VideoOutputError(ValueError):
    """An output cannot be written: its folder is missing, it names the input or another output, it
    exists and may not be replaced, or the encoder refuses its size."""


@dataclass(frozen=True)
class VideoOutputs:
    video: str  # annotated MP4
    jsonl: str  # one JSON line per frame, see perception.tracking.records
    mot: str | None = None  # MOTChallenge text, optional
    overwrite: bool = False  # replace outputs that exist (never the input)

    def named(self) -> list[tuple[str, str]]:
        """(kind, path) of each output asked for."""
        return [(kind, path) for kind, path in (("video", self.video), ("JSON Lines", self.jsonl),
                                                ("MOTChallenge", self.mot)) if path]

    def check(self, input_path: str) -> None:
        """Raise VideoOutputError (one line) unless every output can be written by the rules of this module."""
        seen: list[tuple[str, str]] = []
        for kind, path in self.named():
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise VideoOutputError(f"folder of the {kind} output does not exist: {folder}")
            if not os.access(folder, os.W_OK):
                raise VideoOutputError(f"no permission to write in the folder of the {kind} output: {folder}")
            if os.path.exists(path) and _same_file(path, input_path):
                raise VideoOutputError(f"the {kind} output {path} is the input video; choose another path")
            for other_kind, other in seen:
                if _same_file(path, other):
                    raise VideoOutputError(f"the {other_kind} and {kind} outputs are the same file: {path}")
            seen.append((kind, path))
            if os.path.isdir(path):
                raise VideoOutputError(f"the {kind} output {path} is a directory; give a file path")
            if os.path.lexists(path) and not self.overwrite:
                raise VideoOutputError(f"{path} already exists; choose another path or pass --overwrite to replace it")

    def remove(self) -> None:
        """Delete the outputs (a run that wrote no frame keeps none)."""
        for _, path in self.named():
            if os.path.isfile(path):
                os.remove(path)


def _same_file(first: str, second: str) -> bool:
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist yet
        return False
