"""`gdino bag`'s output bag, plus what `gdino label` keeps of each frame: a JSON line, and the kept frames
for the dataset (their JPEG when asked). The bag itself is written exactly as perception.bags.output does."""
from __future__ import annotations

import json
from pathlib import Path

from perception.bags.output import BagOutput
from perception.camera_messages import stamp_seconds
from perception.labeling.dataset import FrameSampler, frame_entry, object_record, save_jpeg


def camera_name(topic: str) -> str:
    """A camera topic as a file name part: ``/front/image_raw`` -> ``front_image_raw``."""
    return topic.strip("/").replace("/", "_") or "camera"


class RecordingBagOutput(BagOutput):
    """A BagOutput that also writes ``records`` (one JSON line per frame) and collects the kept frames in
    :attr:`kept` (perception.labeling.dataset.frame_entry), writing their JPEG into ``jpeg_folder``."""

    def __init__(self, path: Path, typestore, cameras: list[str], annotate: bool, records: Path,
                 sampler: FrameSampler, jpeg: bool) -> None:
        super().__init__(path, typestore, cameras, annotate)
        self.records_path, self.sampler, self.jpeg = records, sampler, jpeg
        self.kept: list[dict] = []
        self._counts = {camera: 0 for camera in cameras}
        self._records = None

    def __enter__(self) -> RecordingBagOutput:
        self._records = open(self.records_path, "w", encoding="utf-8")
        try:
            return super().__enter__()
        except BaseException:
            self._records.close()
            raise

    def write(self, camera: str, timestamp: int, header, rgb, objects) -> None:
        super().write(camera, timestamp, header, rgb, objects)
        index = self._counts[camera]
        self._counts[camera] += 1
        stamp = stamp_seconds(header)
        time = stamp if stamp is not None else timestamp / 1e9
        records = [object_record(obj) for obj in objects]
        self._records.write(json.dumps({"camera": camera, "frame": index, "timestamp": timestamp, "time": time,
                                        "tracks": records}) + "\n")
        if self.sampler.keep(camera, time):
            name = f"{camera_name(camera)}/{index:06d}"
            height, width = rgb.shape[:2]
            source = {"camera": camera, "frame": index, "time": time, "timestamp": timestamp}
            self.kept.append(frame_entry(name, width, height, source, records))
            if self.jpeg:
                save_jpeg(self.records_path.parent, name, rgb)

    def __exit__(self, *exc_info) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._records.close()
