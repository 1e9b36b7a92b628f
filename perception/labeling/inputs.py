"""What `gdino label` reads: command-line paths, glob patterns and manifest files expanded into typed inputs.

- a folder with ``metadata.yaml`` or ``.mcap`` files, or an ``.mcap`` file: a **bag** (perception.bags.inputs);
- another folder: an **image folder**, its image files (not its subfolders) in name order;
- a ``.txt`` or ``.lst`` file: a **manifest**, one path or pattern a line (``#`` starts a comment), relative
  paths taken from the manifest's folder; a manifest may not name another manifest;
- a pattern with ``*``, ``?`` or ``[`` that is not itself a path: its matches (``**`` reaches subfolders);
- any other file: a **video** (whether it decodes is the worker's to find out: an unreadable one fails alone).

A path that does not exist, a pattern that matches nothing, an empty manifest or a folder with nothing
to read is the user's to fix (:class:`LabelInputError`, one line) before anything runs. Inputs named
twice (the same file by its real path) are read once.
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

KINDS = ("video", "bag", "images")
MANIFEST_SUFFIXES = (".txt", ".lst")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".pnm", ".ppm", ".pgm")
_PATTERN_CHARACTERS = set("*?[")


class LabelInputError(ValueError):
    """An input argument names nothing that can be read; the message is one line."""


@dataclass(frozen=True)
class LabelInput:
    """One input of the run: its absolute path, kind (one of KINDS) and ``key``, the unique name of its
    outputs (file stem and a hash of the path, so two ``clip.mp4`` in different folders do not collide)."""

    path: str
    kind: str

    @property
    def key(self) -> str:
        digest = hashlib.sha1(self.path.encode()).hexdigest()[:8]
        return f"{Path(self.path).stem or 'input'}-{digest}"

    def fingerprint(self) -> tuple[int, int]:
        """(size in bytes, latest modification time in ns) of the file, or of a folder's files (a bag's
        storage files, an image folder's images): what tells a rerun that the input changed."""
        if self.kind == "video" or Path(self.path).is_file():
            status = os.stat(self.path)
            return status.st_size, status.st_mtime_ns
        statuses = [entry.stat() for entry in os.scandir(self.path) if entry.is_file()]
        return sum(s.st_size for s in statuses), max((s.st_mtime_ns for s in statuses), default=0)


def image_files(folder: str | Path) -> list[Path]:
    """An image folder's image files, by name (not its subfolders)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def expand_inputs(arguments: list[str]) -> list[LabelInput]:
    """Every input the arguments name, in the order given; raises LabelInputError for one that names nothing."""
    inputs: dict[str, LabelInput] = {}
    for argument in arguments:
        for found in _expand(argument, base=None):
            inputs.setdefault(os.path.realpath(found.path), found)
    return list(inputs.values())


def _expand(argument: str, base: Path | None) -> list[LabelInput]:
    path = Path(argument) if base is None or os.path.isabs(argument) else base / argument
    if not os.path.lexists(path) and _PATTERN_CHARACTERS & set(argument):
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise LabelInputError(f"{argument}: the pattern matches nothing")
        return [_typed(Path(match), argument) for match in matches if not _is_manifest(Path(match))]
    if not path.exists():
        raise LabelInputError(f"{path}: no such file or folder")
    if _is_manifest(path):
        if base is not None:
            raise LabelInputError(f"{path}: a manifest may not name another manifest")
        return _manifest(path)
    return [_typed(path, argument)]


def _is_manifest(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES


def _manifest(path: Path) -> list[LabelInput]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise LabelInputError(f"cannot read the manifest {path}: {error}") from error
    entries = [line.split("#", 1)[0].strip() for line in lines]
    found = [item for entry in entries if entry for item in _expand(entry, base=path.parent)]
    if not found:
        raise LabelInputError(f"the manifest {path} names no input")
    return found


def _typed(path: Path, argument: str) -> LabelInput:
    absolute = os.path.abspath(path)
    if path.is_dir():
        if (path / "metadata.yaml").is_file() or any(path.glob("*.mcap")):
            return LabelInput(absolute, "bag")
        if image_files(path):
            return LabelInput(absolute, "images")
        raise LabelInputError(f"{argument}: the folder holds no bag and no image file ({', '.join(IMAGE_SUFFIXES)})")
    if path.suffix == ".mcap":
        return LabelInput(absolute, "bag")
    if path.is_file():
        return LabelInput(absolute, "video")
    raise LabelInputError(f"{argument}: neither a file nor a folder")
