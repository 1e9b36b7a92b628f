"""Grounding data: records on disk, samples in memory, and the datasets that serve them.

A grounding sample is an image with boxes, each box labelled by the phrase that names it. On disk a
dataset is either
- JSON Lines, one image per line:
  `{"image": "images/000001.png", "width": 320, "height": 320,
    "objects": [{"phrase": "red circle", "box": [x0, y0, x1, y1]}, ...]}`
  with boxes xyxy in pixels and image paths relative to the file's folder; or
- a COCO-style detection file (`images`, `annotations` with `bbox` as xywh pixels, `categories`);
  the category name is the phrase, crowd annotations (`iscrowd: 1`) are left out.
Prompts and token targets for these samples are built in prompts.py.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

from perception.training.crowds import CROWD, CrowdConfig, generate_crowd_scene
from perception.training.synthetic import SceneConfig, generate_scene

logger = logging.getLogger(__name__)


@dataclass
class GroundingSample:
    """image: (H, W, 3) uint8 RGB; boxes: (N, 4) float32 xyxy pixels; labels: the phrase of each box;
    visibility: (N,) float32, the fraction of each object that is drawn (None: all of it)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    visibility: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.visibility = (np.ones(len(self.boxes), np.float32) if self.visibility is None
                           else np.asarray(self.visibility, np.float32).reshape(-1))
        if len(self.visibility) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.visibility)} visibilities")
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {self.image.shape} {self.image.dtype}")
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.labels)} labels")


@dataclass(frozen=True)
class GroundingRecord:
    """One image of a dataset file. image_path: absolute, or relative to the dataset file's folder."""

    image_path: str
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]  # xyxy pixels
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        where = f"record of {self.image_path!r}"
        if self.width < 1 or self.height < 1:
            raise ValueError(f"{where}: width and height must be positive, got {self.width}x{self.height}")
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"{where}: {len(self.boxes)} boxes but {len(self.labels)} labels")
        for box, label in zip(self.boxes, self.labels):
            if len(box) != 4 or not (box[0] <= box[2] and box[1] <= box[3]):
                raise ValueError(f"{where}: box {list(box)} of {label!r} is not xyxy with x0 <= x1, y0 <= y1")
            if not label.strip():
                raise ValueError(f"{where}: a box has an empty phrase")


def write_jsonl(path: str | Path, records: Sequence[GroundingRecord]) -> None:
    lines = []
    for record in records:
        objects = [{"phrase": label, "box": list(box)} for box, label in zip(record.boxes, record.labels)]
        entry = {"image": record.image_path, "width": record.width, "height": record.height, "objects": objects}
        lines.append(json.dumps(entry) + "\n")
    Path(path).write_text("".join(lines))


def read_jsonl(path: str | Path) -> list[GroundingRecord]:
    records = []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            objects = entry["objects"]
            records.append(
                GroundingRecord(
                    image_path=entry["image"],
                    width=int(entry["width"]),
                    height=int(entry["height"]),
                    boxes=tuple(tuple(float(v) for v in item["box"]) for item in objects),
                    labels=tuple(item["phrase"] for item in objects),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{line_number}: not a grounding record ({error!r})") from error
    return records


def read_coco(path: str | Path) -> list[GroundingRecord]:
    """Records of a COCO-style detection file, one per image (images without boxes included)."""
    try:
        data = json.loads(Path(path).read_text())
        names = {category["id"]: category["name"] for category in data["categories"]}
        objects: dict[int, list[tuple[tuple[float, float, float, float], str]]] = {}
        for annotation in data["annotations"]:
            if annotation.get("iscrowd", 0):
                continue
            x, y, width, height = (float(v) for v in annotation["bbox"])
            label = names[annotation["category_id"]]
            objects.setdefault(annotation["image_id"], []).append(((x, y, x + width, y + height), label))
        records = []
        for image in data["images"]:
            items = objects.get(image["id"], [])
            records.append(
                GroundingRecord(
                    image_path=image["file_name"],
                    width=int(image["width"]),
                    height=int(image["height"]),
                    boxes=tuple(box for box, _ in items),
                    labels=tuple(label for _, label in items),
                )
            )
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a COCO-style detection file ({error!r})") from error
    return records


def read_records(path: str | Path) -> list[GroundingRecord]:
    """Records of a `.jsonl` grounding file or a `.json` COCO-style file."""
    suffix = Path(path).suffix
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return read_coco(path)
    raise ValueError(f"{path}: expected a .jsonl grounding file or a .json COCO-style file")


def load_sample(record: GroundingRecord, root: str | Path) -> GroundingSample:
    """Read a record's image (relative paths under `root`) and check its size against the record."""
    image_path = Path(root) / record.image_path
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {image_path}")
    if image.shape[:2] != (record.height, record.width):
        raise ValueError(
            f"{image_path} is {image.shape[1]}x{image.shape[0]} but its record says {record.width}x{record.height}"
        )
    return GroundingSample(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), np.array(record.boxes), list(record.labels))


def write_synthetic_dataset(
    directory: str | Path, seeds: Sequence[int], size: tuple[int, int], config: SceneConfig = SceneConfig()
) -> Path:
    """Render the scenes of `seeds` as PNGs under `directory/images` and index them in
    `directory/annotations.jsonl`, which is returned."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for seed in seeds:
        scene = generate_scene(seed, size, config)
        name = f"images/{seed:08d}.png"
        if not cv2.imwrite(str(directory / name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {directory / name}")
        boxes = tuple(tuple(float(v) for v in item.box) for item in scene.objects)
        records.append(GroundingRecord(name, size[1], size[0], boxes, tuple(scene.labels)))
    index = directory / "annotations.jsonl"
    write_jsonl(index, records)
    logger.info("wrote %d generated images to %s", len(records), directory)
    return index


class GroundingFileDataset(Dataset):
    """Samples of a `.jsonl` or COCO `.json` file; relative image paths are under the file's folder."""

    def __init__(self, path: str | Path) -> None:
        self.root = Path(path).parent
        self.records = read_records(path)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> GroundingSample:
        return load_sample(self.records[index], self.root)


class SyntheticGroundingDataset(Dataset):
    """Generated scenes of seeds first_seed, first_seed + 1, ..., made on the fly (about 20 ms each
    at 320x320). Keep the seed ranges of training and evaluation sets apart."""

    def __init__(
        self, first_seed: int, length: int, size: tuple[int, int] = (320, 320), config: SceneConfig = SceneConfig()
    ) -> None:
        if first_seed < 0 or length < 1:
            raise ValueError(f"need first_seed >= 0 and length >= 1, got {first_seed} and {length}")
        self.first_seed, self.length, self.size, self.config = first_seed, length, size, config

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> GroundingSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        scene = generate_scene(self.first_seed + index, self.size, self.config)
        return GroundingSample(scene.image, scene.boxes, scene.labels, scene.visibility)


class CrowdGroundingDataset(Dataset):
    """Still images of crowds (perception.training.crowds.generate_crowd_scene), one per seed first_seed + index:
    6-15 walkers of one phrase drawn per seed from the scene vocabulary, at one of `sizes` ((height, width)),
    in `mixed_share` of the images a few walkers of up to three other phrases, and 0 to `max_pillars` static
    pillars (CrowdConfig.max_pillars; more of them hide more walkers in part, at either side)."""

    def __init__(self, first_seed: int, length: int, sizes: Sequence[tuple[int, int]] = ((240, 320), (320, 320)),
                 mixed_share: float = 0.3, scene: SceneConfig = SceneConfig(),
                 max_pillars: int = CROWD.max_pillars) -> None:
        if first_seed < 0 or length < 1 or not sizes or not 0 <= mixed_share <= 1:
            raise ValueError(f"need first_seed >= 0, length >= 1, sizes and mixed_share in [0, 1]; got {first_seed}, "
                             f"{length}, {sizes} and {mixed_share}")
        CrowdConfig(max_pillars=max_pillars)  # refuses a bad count here rather than in a batch worker
        self.first_seed, self.length, self.sizes = first_seed, length, tuple(sizes)
        self.mixed_share, self.scene, self.max_pillars = mixed_share, scene, max_pillars

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> GroundingSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        seed = self.first_seed + index
        rng = np.random.default_rng([seed, 2])
        phrases = self.scene.phrases
        mixed = rng.uniform() < self.mixed_share
        config = CrowdConfig(phrase=phrases[int(rng.integers(len(phrases)))], scene=self.scene,
                             other_phrases=int(rng.integers(1, 4)) if mixed else 0, other_share=0.3 if mixed else 0.0,
                             max_pillars=self.max_pillars)
        scene = generate_crowd_scene(seed, self.sizes[int(rng.integers(len(self.sizes)))], config)
        return GroundingSample(scene.image, scene.boxes, scene.labels, scene.visibility)


class MixtureDataset(Dataset):
    """Item i of one of `parts`, chosen by a draw seeded with i (so equal indices give equal items): part k with
    probability weights[k] / sum(weights). Its length is the shortest part's."""

    def __init__(self, parts: Sequence[Dataset], weights: Sequence[float]) -> None:
        if not parts or len(parts) != len(weights) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"need one non-negative weight per part with a positive sum; got {list(weights)}")
        self.parts = list(parts)
        self.cumulative = np.cumsum(np.asarray(weights, np.float64) / float(sum(weights)))

    def __len__(self) -> int:
        return min(len(part) for part in self.parts)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        draw = np.random.default_rng([index, 3]).uniform()
        part = min(int(np.searchsorted(self.cumulative, draw, side="right")), len(self.parts) - 1)
        return self.parts[part][index]
