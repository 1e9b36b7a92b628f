"""A long video in time chunks for several workers, and the join of their track records into one.

Chunk ``k`` owns the frames with time in ``[start_k, end_k)`` (the last one reads to the end of the file),
but its worker reads from ``start_k - overlap``: there its tracker warms up on frames chunk ``k - 1``
owns. In that overlap both chunks have tracks; a track of chunk ``k`` takes the joined id of the track of
chunk ``k - 1`` whose matched boxes it shares most often (same phrase, IoU >= ``MATCH_IOU``, each id
used once, most shared frames first); any other track gets a new id, above every id used before it.
The joined records are chunk 0's frames, then each later chunk's own frames, renumbered in order.
Detections do not depend on the chunk (every frame goes through the model); tracks may, near a chunk's
start, in what the tracker has seen.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from perception.tracking.records import mot_lines

MATCH_IOU = 0.5  # a box of each chunk in the same overlap frame, same object


@dataclass(frozen=True)
class Chunk:
    """One time range of a video: its worker reads ``[read_from, end)`` and owns ``[start, end)``, seconds."""

    index: int
    start: float
    end: float | None  # None: to the end of the file
    read_from: float


def plan_chunks(duration: float, chunk_seconds: float, overlap: float) -> list[Chunk]:
    """Chunks of ``chunk_seconds`` covering ``duration`` (0 when unknown, or ``chunk_seconds`` 0: one chunk)."""
    count = 1 if chunk_seconds <= 0 or duration <= 0 else max(1, math.ceil(duration / chunk_seconds - 1e-9))
    return [Chunk(k, k * chunk_seconds, None if k == count - 1 else (k + 1) * chunk_seconds,
                  max(0.0, k * chunk_seconds - overlap)) for k in range(count)]


def _iou(a: list[float], b: list[float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_tracks(earlier: list[dict], later: list[dict]) -> dict[int, int]:
    """later id -> earlier id, from the records of the same overlap frames (by time) of two chunks."""
    by_time = {record["time"]: record for record in earlier}
    shared: Counter = Counter()
    for record in later:
        other = by_time.get(record["time"])
        if other is None:
            continue
        for new in (t for t in record["tracks"] if t["matched"]):
            for old in (t for t in other["tracks"] if t["matched"]):
                if old["label"] == new["label"] and _iou(old["box"], new["box"]) >= MATCH_IOU:
                    shared[new["id"], old["id"]] += 1
    mapping: dict[int, int] = {}
    for (new, old), _ in sorted(shared.items(), key=lambda item: (-item[1], item[0])):
        if new not in mapping and old not in mapping.values():
            mapping[new] = old
    return mapping


def join_records(chunks: list[Chunk], records: list[list[dict]]) -> tuple[list[dict], int]:
    """The chunks' JSON-lines records (each as its worker wrote it) joined into one video's records;
    also how many tracks were joined across a boundary."""
    joined: list[dict] = []
    previous: list[dict] = []
    next_id, joins = 1, 0
    for chunk, chunk_records in zip(chunks, records):
        mapping: dict[int, int] = {}
        if chunk.index:
            overlap = [r for r in chunk_records if r["time"] < chunk.start]
            matched = match_tracks([r for r in previous if r["time"] >= chunk.read_from], overlap)
            mapping = {new: old for new, old in matched.items()}
            joins += len(mapping)
        own = [r for r in chunk_records if r["time"] >= chunk.start]
        for record in own:
            for track in record["tracks"]:
                if track["id"] not in mapping:
                    mapping[track["id"]] = next_id
                    next_id += 1
        for record in own:
            tracks = [{**track, "id": mapping[track["id"]]} for track in record["tracks"]]
            joined.append({**record, "frame": len(joined), "tracks": tracks})
            next_id = max([next_id] + [t["id"] + 1 for t in tracks])
        previous = joined[-len(own):] if own else []
    return joined, joins


def write_joined(folder: Path, tracks_name: str, mot_name: str, records: list[dict]) -> None:
    """The joined records as the video's JSON lines and MOTChallenge text (perception.tracking.records)."""
    with open(folder / tracks_name, "w", encoding="utf-8") as lines, open(folder / mot_name, "w", encoding="utf-8") as mot:
        for record in records:
            lines.write(json.dumps(record) + "\n")
            mot.write(mot_lines(record["frame"], [SimpleNamespace(track_id=t["id"], box_xyxy=t["box"], score=t["score"])
                                                  for t in record["tracks"]]))
