"""Real annotated trajectories (MOT Challenge ground truth) as the "trajectories" scenario of
`gdino eval tracking`: the people of a recorded sequence, with noisy truth standing in for the detector, so
the trackers are scored on how real people move rather than on our generated videos.

A sequence is a MOT Challenge ``gt.txt``, or a sequence folder holding ``gt/gt.txt`` and, optionally,
``seqinfo.ini`` (frame rate, image size, length) and the images it names. Rows are
``frame,id,left,top,width,height[,conf[,...]]`` with frames and pixels counted from 1; rows with conf 0
(MOT16/17's "ignore") are left out, and in MOT16/17's nine columns (``...,conf,class,visibility``) only class
1, pedestrians, is kept, with its annotated visibility. Elsewhere (MOT15's ten columns end in world
coordinates) visibility, which the noise model turns into scores and misses, is estimated from the boxes: the
part of a box inside the image and not covered by the box of someone nearer the camera (whose box ends lower
in the image). With ``occlusion=False`` every person counts as fully visible: the simulated detector of
issue 15's first measurement.
Without images, every frame is one uniform grey: the trackers see where people are and nothing of how they
look, so appearance cannot tell anyone apart (as with people dressed alike).

Two real sequences come with motmetrics (a dependency of ours, MIT licence): TUD-Campus and TUD-Stadtmitte
(TU Darmstadt, 640x480 at 25 frames per second as MOT Challenge 2015 describes them; 8 and 10 people).
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.training.synthetic import TrackedObject

PHRASE = "person"
# The sequences motmetrics installs, with what MOT Challenge 2015's seqinfo.ini says of them: (height, width),
# frames per second.
BUNDLED = {"TUD-Campus": ((480, 640), 25.0), "TUD-Stadtmitte": ((480, 640), 25.0)}
_VISIBILITY_GRID = 16  # points per side sampled in each box to estimate how much of it shows
_GREY = 128


class TrajectoriesError(ValueError):
    """A ground-truth sequence that cannot be read; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class Sequence:
    """One annotated sequence: the people of each frame, and the images' size and rate."""

    name: str
    objects_per_frame: list[list[TrackedObject]]
    size: tuple[int, int]  # (height, width)
    frame_rate: float
    images: list[Path] | None  # one per frame, when the sequence folder has them

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as (H, W, 3) uint8 RGB: the sequence's image, or uniform grey without images."""
        if self.images is None:
            return np.full((*self.size, 3), _GREY, np.uint8)
        image = cv2.imread(str(self.images[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise TrajectoriesError(f"{self.images[index]}: not an image OpenCV can read")
        if image.shape[:2] != self.size:
            raise TrajectoriesError(f"{self.images[index]}: {image.shape[1]}x{image.shape[0]} where the sequence "
                                    f"says {self.size[1]}x{self.size[0]}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def bundled_sequences() -> list[Path]:
    """The ground-truth files of the sequences motmetrics installs (see BUNDLED)."""
    import motmetrics

    root = Path(motmetrics.__file__).parent / "data"
    paths = [root / name / "gt.txt" for name in BUNDLED]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise TrajectoriesError(f"motmetrics' sequences are missing ({', '.join(missing)}): reinstall motmetrics "
                                "(requirements.txt pins it) or name sequences of your own")
    return paths


_MOT17_COLUMNS = 9  # frame,id,left,top,width,height,conf,class,visibility
_PEDESTRIAN = 1  # MOT16/17's class of the people it evaluates


def _rows(path: Path) -> np.ndarray:
    """The considered rows of a gt.txt as (frame, id, x0, y0, x1, y1, visibility), boxes as 0-based pixel
    edges, visibility NaN where the file does not annotate it."""
    rows, seen = [], set()
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                values = [float(value) for value in line.replace(" ", "").strip().rstrip(",").split(",")]
            except ValueError:
                raise TrajectoriesError(f"{path}:{number}: not comma-separated numbers: {line.strip()!r}") from None
            if len(values) < 6:
                raise TrajectoriesError(f"{path}:{number}: {len(values)} values where MOT ground truth has at least "
                                        "6 (frame,id,left,top,width,height)")
            frame, track_id, left, top, width, height = values[:6]
            if not np.isfinite(values[:6]).all() or frame < 1 or frame != int(frame) or track_id != int(track_id):
                raise TrajectoriesError(f"{path}:{number}: frame numbers count from 1, ids are whole numbers and "
                                        f"boxes finite: {line.strip()!r}")
            if width <= 0 or height <= 0:
                raise TrajectoriesError(f"{path}:{number}: a box of {width}x{height}")
            if len(values) >= 7 and values[6] == 0:
                continue  # MOT16/17: a region to ignore, not a person to track
            annotated = len(values) == _MOT17_COLUMNS
            if annotated and values[7] != _PEDESTRIAN:
                continue  # a vehicle, a reflection, a static person: not scored by MOT17 either
            if annotated and not 0 <= values[8] <= 1:
                raise TrajectoriesError(f"{path}:{number}: visibility {values[8]} (MOT17's ninth column) is not in "
                                        "[0, 1]")
            if (frame, track_id) in seen:
                raise TrajectoriesError(f"{path}:{number}: id {int(track_id)} twice in frame {int(frame)}")
            seen.add((frame, track_id))
            rows.append((frame, track_id, left - 1, top - 1, left - 1 + width, top - 1 + height,
                         values[8] if annotated else np.nan))
    if not rows:
        raise TrajectoriesError(f"{path}: no ground truth (every row is empty or marked to ignore)")
    return np.array(rows, np.float64)


def estimated_visibility(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The fraction of each box (xyxy) inside the image and not behind a box ending lower in it (nearer)."""
    height, width = size
    steps = (np.arange(_VISIBILITY_GRID) + 0.5) / _VISIBILITY_GRID
    visibility = np.empty(len(boxes))
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        xs, ys = np.meshgrid(x0 + steps * (x1 - x0), y0 + steps * (y1 - y0))
        shown = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
        for other in np.flatnonzero(boxes[:, 3] > y1):
            ox0, oy0, ox1, oy1 = boxes[other]
            shown &= ~((xs >= ox0) & (xs < ox1) & (ys >= oy0) & (ys < oy1))
        visibility[index] = shown.mean()
    return visibility


def _sequence_info(folder: Path) -> dict:
    info = folder / "seqinfo.ini"
    if not info.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(info, encoding="utf-8")
        section = parser["Sequence"]
        result = {"frame_rate": float(section["frameRate"]), "size": (int(section["imHeight"]),
                                                                      int(section["imWidth"]))}
        if "seqLength" in section:
            result["length"] = int(section["seqLength"])
        if "imDir" in section:
            result["images"] = (folder / section["imDir"], section.get("imExt", ".jpg"))
        return result
    except (configparser.Error, KeyError, ValueError) as error:
        raise TrajectoriesError(f"{info}: needs [Sequence] with frameRate, imWidth and imHeight ({error})") from None


def _images(directory: Path, extension: str, length: int) -> list[Path] | None:
    """The images of a MOT sequence (000001.jpg, ...), or None when its folder has none."""
    if not directory.is_dir():
        return None
    paths = [directory / f"{index:06d}{extension}" for index in range(1, length + 1)]
    missing = [path.name for path in paths if not path.is_file()]
    if len(missing) == len(paths):
        return None
    if missing:
        raise TrajectoriesError(f"{directory}: {len(missing)} of {length} images missing (first {missing[0]}); "
                                "remove the folder to track without images")
    return paths


def read_sequence(path: str | Path, size: tuple[int, int] | None = None, frame_rate: float | None = None,
                  occlusion: bool = True) -> Sequence:
    """A sequence from a gt.txt or a MOT sequence folder. size (height, width) and frame_rate apply where no
    seqinfo.ini says them (and must agree with one that does); motmetrics' own sequences know theirs.
    occlusion: people are as visible as annotated or estimated (see the module); False: fully visible."""
    path = Path(path)
    gt = path / "gt" / "gt.txt" if path.is_dir() else path
    if not gt.is_file():
        raise TrajectoriesError(f"{path}: neither a MOT ground-truth file nor a folder holding gt/gt.txt")
    # A sequence folder (<name>/gt/gt.txt, or <name>/gt.txt as motmetrics keeps it) or a file of its own.
    folder = None if gt.name != "gt.txt" else gt.parent.parent if gt.parent.name == "gt" else gt.parent
    name = gt.stem if folder is None else folder.resolve().name
    info = {} if folder is None else _sequence_info(folder)
    known_size, known_rate = BUNDLED.get(name, (None, None)) if not info else (info["size"], info["frame_rate"])
    for given, known, what in ((size, known_size, "size"), (frame_rate, known_rate, "frame rate")):
        if given is not None and known is not None and given != known:
            raise TrajectoriesError(f"{path}: its {what} is {known}; given {given}")
    size, frame_rate = size or known_size, frame_rate or known_rate
    if size is None or frame_rate is None:
        raise TrajectoriesError(f"{path}: no seqinfo.ini says its image size and frame rate: give them "
                                "(--size WIDTHxHEIGHT --frame-rate FPS)")
    rows = _rows(gt)
    length = max(info.get("length", 0), int(rows[:, 0].max()))
    images = _images(*info["images"], length) if "images" in info else None
    objects_per_frame: list[list[TrackedObject]] = [[] for _ in range(length)]
    height, width = size
    for frame in range(1, length + 1):
        present = rows[rows[:, 0] == frame]
        if not len(present):
            continue
        boxes = present[:, 2:6]
        visibility = present[:, 6] if not np.isnan(present[:, 6]).any() else estimated_visibility(boxes, size)
        if not occlusion:
            visibility = np.ones(len(present))
        clipped = boxes.copy()
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
        objects_per_frame[frame - 1] = [
            TrackedObject(int(track_id), PHRASE, tuple(float(value) for value in box), float(shown))
            for track_id, box, shown in zip(present[:, 1], clipped, visibility)
            if box[2] > box[0] and box[3] > box[1]]
    return Sequence(name, objects_per_frame, size, frame_rate, images)
