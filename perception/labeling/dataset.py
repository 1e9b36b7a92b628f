"""The run's dataset: the frames kept from each input, as COCO JSON and (optionally) YOLO label files.

Each input's worker leaves a fragment, ``dataset.json`` in its output folder: its kept frames, each with
the objects the tracker matched to a detection in it (not the tracker's predictions), boxes xyxy in
pixels of the frame as in the input's JSON lines. The driver merges the fragments of every finished
input into ``coco.json`` once per run, so an input counts once however often it was tried.

COCO: ``categories`` are the prompt's phrases (ids from 1 in prompt order); each image has ``file_name``
(where its JPEG is, written with --jpeg: ``inputs/<key>/images/<name>.jpg``), its size and where it came
from (``input``, ``frame``, ``time``, and ``camera`` for a bag); each annotation has ``bbox`` (x, y, width,
height in pixels), ``area``, ``score`` and ``track_id`` (null for an image folder, which is not tracked).
An object whose label is not one of the phrases (the detector could not name it) is left out.

YOLO: beside each JPEG, ``inputs/<key>/labels/<name>.txt``, a line ``class cx cy w h`` per object (class
from 0 in prompt order; centre and size divided by the image's width and height); ``yolo/data.yaml`` and
``yolo/images.txt`` list the phrases and every image.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

FRAGMENT_NAME = "dataset.json"
COCO_NAME = "coco.json"


class FrameSampler:
    """Which frames the dataset keeps, per stream (a video, a bag's camera), frames given in order: every
    ``every``-th from the first, or with ``every_seconds`` the first frame of each period (its
    time // every_seconds differs from the previous frame's)."""

    def __init__(self, every: int, every_seconds: float | None) -> None:
        self.every, self.every_seconds = every, every_seconds
        self._count: dict[str, int] = {}
        self._period: dict[str, int] = {}

    def keep(self, stream: str, time: float) -> bool:
        index = self._count[stream] = self._count.get(stream, -1) + 1
        if self.every_seconds is None:
            return index % self.every == 0
        period = int(time // self.every_seconds)
        previous = self._period.get(stream)
        self._period[stream] = period
        return period != previous


def object_record(obj) -> dict:
    """A perception.streams.LabeledBox as the JSON lines' track fields (id null when untracked)."""
    return {"id": int(obj.object_id) if obj.object_id else None, "label": obj.label, "score": round(float(obj.score), 4),
            "box": [round(float(value), 2) for value in obj.box_xyxy]}


def frame_entry(name: str, width: int, height: int, source: dict, objects: list[dict]) -> dict:
    """One kept frame of a fragment. objects: ``{"id", "label", "score", "box"}`` as in the JSON lines."""
    return {"name": name, "width": width, "height": height, "source": source, "objects": objects}


def image_path(key: str, name: str) -> str:
    """Where the JPEG of frame ``name`` of input ``key`` goes, relative to the run's output folder."""
    return f"inputs/{key}/images/{name}.jpg"


def save_jpeg(folder: Path, name: str, rgb: np.ndarray) -> None:
    """A kept frame, (H, W, 3) uint8 RGB, as ``images/<name>.jpg`` in an input's output folder."""
    path = folder / "images" / f"{name}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1]):
        raise OSError(f"cannot write {path}")


def write_fragment(folder: Path, frames: list[dict]) -> None:
    (folder / FRAGMENT_NAME).write_text(json.dumps({"frames": frames}) + "\n", encoding="utf-8")


def read_fragment(folder: Path) -> list[dict]:
    return json.loads((folder / FRAGMENT_NAME).read_text(encoding="utf-8"))["frames"]


def yolo_lines(objects: list[dict], phrases: list[str], width: int, height: int) -> str:
    """YOLO rows of one image: ``class cx cy w h``, normalized by its size, for objects named by a phrase."""
    rows = []
    for obj in objects:
        if obj["label"] not in phrases:
            continue
        x0, y0, x1, y1 = obj["box"]
        rows.append(f"{phrases.index(obj['label'])} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                    f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}\n")
    return "".join(rows)


def write_yolo_labels(folder: Path, frames: list[dict], phrases: list[str]) -> None:
    """``labels/<name>.txt`` in an input's output folder for each kept frame (empty: nothing in it)."""
    for frame in frames:
        path = folder / "labels" / f"{frame['name']}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yolo_lines(frame["objects"], phrases, frame["width"], frame["height"]), encoding="utf-8")


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_coco(output: Path, phrases: list[str], fragments: Iterable[tuple[str, str, list[dict]]]) -> dict:
    """Merge fragments ``(input path, key, frames)`` into ``output/coco.json``; returns the COCO dict."""
    categories = [{"id": index + 1, "name": phrase} for index, phrase in enumerate(phrases)]
    images, annotations = [], []
    for input_path, key, frames in fragments:
        for frame in frames:
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": image_path(key, frame["name"]), "width": frame["width"],
                           "height": frame["height"], "input": input_path, **frame["source"]})
            for obj in frame["objects"]:
                if obj["label"] not in phrases:
                    continue
                x0, y0, x1, y1 = obj["box"]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": phrases.index(obj["label"]) + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                                    "score": obj["score"], "track_id": obj["id"]})
    coco = {"info": {"description": "gdino label", "prompt_phrases": phrases}, "images": images,
            "annotations": annotations, "categories": categories}
    _atomic_write(output / COCO_NAME, json.dumps(coco) + "\n")
    return coco


def write_yolo_lists(output: Path, phrases: list[str], coco: dict) -> None:
    """``yolo/data.yaml`` (phrases as names) and ``yolo/images.txt`` (every kept frame's JPEG)."""
    folder = output / "yolo"
    folder.mkdir(exist_ok=True)
    _atomic_write(folder / "images.txt", "".join(f"{output.resolve() / image['file_name']}\n" for image in coco["images"]))
    names = "".join(f"  {index}: {json.dumps(phrase)}\n" for index, phrase in enumerate(phrases))
    _atomic_write(folder / "data.yaml", f"path: {json.dumps(str(output.resolve()))}\ntrain: yolo/images.txt\n"
                                        f"val: yolo/images.txt\nnames:\n{names}")
