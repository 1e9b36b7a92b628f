"""`gdino bench label`: the batch job's throughput on generated videos, against `gdino video` on each in turn.

Every run labels the same generated videos with the same model, one torch thread per worker: the
sequential baseline runs perception.video.job.process_video (what `gdino video` runs) on each video in
turn in this process; the batch runs go through a local Ray instance with a pool of 1 and then 2 workers
whose models are loaded before the clock starts (the baseline's model is loaded before its clock too).
``scaling`` = time with 1 worker / time with 2; ``ratio`` = batch frames/s with 1 worker / sequential frames/s.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from perception.labeling.inputs import expand_inputs
from perception.labeling.settings import LabelSettings


def write_videos(folder: Path, count: int, frames: int, size: tuple[int, int]) -> list[Path]:
    """``count`` generated videos (perception.training.synthetic, seeds 0..count-1) of ``frames`` frames at 10 fps."""
    from perception.training.synthetic import generate_video
    from perception.video.encode import VideoWriter

    paths = []
    for seed in range(count):
        path = folder / f"clip{seed}.mp4"
        images, _ = generate_video(seed, frames, size)
        with VideoWriter(str(path), size[1], size[0], Fraction(10), Fraction(1, 10), threads=1) as writer:
            for index, image in enumerate(images):
                writer.write(image, index)
        paths.append(path)
    return paths


def _sequential(make_detector: Callable, settings: LabelSettings, videos: list[Path], folder: Path) -> float:
    import torch

    from perception.video.job import VideoJobConfig, process_video
    from perception.video.outputs import VideoOutputs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        detector = make_detector()
        detector.set_prompt(settings.prompt)
        config = VideoJobConfig(batch_size=settings.batch_size, tracker=settings.tracker)
        started = time.perf_counter()
        for video in videos:
            outputs = VideoOutputs(str(folder / f"{video.stem}.mp4"), str(folder / f"{video.stem}.jsonl"))
            process_video(detector, settings.prompt, str(video), outputs, config)
        return time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)


def _batch(make_detector: Callable, settings: LabelSettings, videos: list[Path], folder: Path, workers: int) -> float:
    import ray

    from perception.labeling.job import LabelRun
    from perception.labeling.workers import WorkerPool

    pool = WorkerPool(make_detector, workers)
    try:
        ray.get([pool.start(slot, settings.prompt) for slot in range(workers)])  # models loaded off the clock
        folder.mkdir()
        started = time.perf_counter()
        LabelRun(pool, expand_inputs([str(v) for v in videos]), folder, settings).run()
        return time.perf_counter() - started
    finally:
        pool.close()


def run_bench(make_detector: Callable, prompt: str, count: int = 8, frames: int = 30,
              size: tuple[int, int] = (120, 160)) -> dict:
    """The figures of the module docstring, as a JSON-ready dict."""
    import ray

    settings = LabelSettings(prompt)
    with tempfile.TemporaryDirectory(prefix="gdino-bench-label-") as temporary:
        folder = Path(temporary)
        (folder / "videos").mkdir()
        (folder / "sequential").mkdir()
        videos = write_videos(folder / "videos", count, frames, size)
        total = count * frames
        sequential = _sequential(make_detector, settings, videos, folder / "sequential")
        started_ray = not ray.is_initialized()
        if started_ray:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            one = _batch(make_detector, settings, videos, folder / "one", 1)
            two = _batch(make_detector, settings, videos, folder / "two", 2)
        finally:
            if started_ray:
                ray.shutdown()
    return {"videos": count, "frames": total, "size": f"{size[0]}x{size[1]}",
            "sequential_seconds": round(sequential, 2), "one_worker_seconds": round(one, 2),
            "two_workers_seconds": round(two, 2), "sequential_fps": round(total / sequential, 2),
            "one_worker_fps": round(total / one, 2), "two_workers_fps": round(total / two, 2),
            "scaling": round(one / two, 3), "ratio": round(sequential / one, 3)}
