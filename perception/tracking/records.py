"""Per-frame track records on disk: JSON Lines (always) and MOTChallenge text (optional).

JSON Lines, one object per frame, in frame order, flushed as each frame is written so a killed run
leaves complete lines up to its last frame::

    {"frame": 0, "time": 0.0, "detected": true,
     "tracks": [{"id": 1, "label": "person", "score": 0.87, "box": [x0, y0, x1, y1],
                 "matched": true, "age": 0}]}

frame: 0-based index of the frame in the output video (the input's index when no start time is set);
time: the frame's timestamp in the input, seconds; detected: whether the detector ran on this frame
(frame stride); box: xyxy in pixels of the input frame; matched: the box is a detection of this frame,
not the tracker's prediction. A frame the detector refused (it raised for that frame alone) has
``"detected": false`` and ``"refused": "<exception type>: <message>"``; its tracks are predictions.

MOTChallenge (1-based frames, top-left width height): ``frame,id,x,y,w,h,score,-1,-1,-1``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from perception.tracking import Track


def track_record(track: Track) -> dict:
    """The JSON-ready dict of one track (box rounded to 1/100 pixel, score to 1e-4)."""
    return {
        "id": track.track_id,
        "label": track.label,
        "score": round(track.score, 4),
        "box": [round(float(value), 2) for value in track.box_xyxy],
        "matched": track.matched,
        "age": track.age,
    }


def mot_lines(frame: int, tracks: Sequence[Track]) -> str:
    """MOTChallenge rows of one frame (0-based ``frame`` in, 1-based out), one per track."""
    rows = []
    for track in tracks:
        x0, y0, x1, y1 = (float(value) for value in track.box_xyxy)
        rows.append(f"{frame + 1},{track.track_id},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},"
                    f"{track.score:.4f},-1,-1,-1\n")
    return "".join(rows)


class TrackRecordWriter:
    """Appends one JSON line (and optional MOTChallenge lines) per frame, flushing each frame."""

    def __init__(self, jsonl_path: str, mot_path: str | None = None) -> None:
        self._jsonl = open(jsonl_path, "w", encoding="utf-8")
        self._mot = open(mot_path, "w", encoding="utf-8") if mot_path else None
        self.frames_written = 0

    def write(self, frame: int, time: float, detected: bool, tracks: Sequence[Track],
              refused: str | None = None) -> None:
        line = {"frame": frame, "time": round(time, 6), "detected": detected,
                "tracks": [track_record(track) for track in tracks]}
        if refused is not None:
            line["refused"] = refused
        self._jsonl.write(json.dumps(line) + "\n")
        self._jsonl.flush()
        if self._mot is not None:
            self._mot.write(mot_lines(frame, tracks))
            self._mot.flush()
        self.frames_written += 1

    def close(self) -> None:
        self._jsonl.close()
        if self._mot is not None:
            self._mot.close()

    def __enter__(self) -> TrackRecordWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
