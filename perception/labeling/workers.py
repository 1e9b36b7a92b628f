"""The Ray side of `gdino label`: connecting to Ray, and a pool of actors that each load the model once and
take one task at a time (an input, or a chunk of a long video: tracking needs its frames in order).

An actor is a process of its own, on any node of the cluster; it reads the input and writes its outputs
under the run's output folder by path, so on a cluster every node must see the inputs and the output
folder at the same paths (a shared file system). A dead actor (killed, out of memory, its node lost)
is replaced by the pool; the driver (perception.labeling.job) decides what happens to its task.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perception.labeling.chunks import Chunk
from perception.labeling.process import InputFailed, WorkResult, finish_video, label_bag, label_images, label_video
from perception.labeling.settings import LabelSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One unit of work: an input (``chunk`` None) or one chunk of a video, written into ``folder``."""

    kind: str
    path: str
    folder: str
    settings: LabelSettings
    chunk: Chunk | None = None


@dataclass
class TaskOutcome:
    """What came back: the result, or why the input cannot be labeled (never retried)."""

    result: WorkResult | None
    failure: str = ""


class LabelWorker:
    """The actor's class (made remote by :class:`WorkerPool`). ``make_detector``: a picklable callable that
    builds the detector (perception.detector.GroundingDinoDetector), called once, in :meth:`load`."""

    def __init__(self, make_detector: Callable, threads: int) -> None:
        self.make_detector, self.threads = make_detector, threads
        self.detector = None

    def load(self, prompt: str) -> int:
        """Load the model and check that it takes ``prompt``; returns this actor's process id."""
        import torch

        torch.set_num_threads(self.threads)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        self.detector = self.make_detector()
        self.detector.set_prompt(prompt)  # a prompt the model refuses fails here, once
        return os.getpid()

    def check(self, prompt: str) -> int:
        """A loaded actor kept from an earlier run: check ``prompt``; returns the process id."""
        self.detector.set_prompt(prompt)
        return os.getpid()

    def run(self, task: Task) -> TaskOutcome:
        folder, settings = Path(task.folder), task.settings
        folder.mkdir(parents=True, exist_ok=True)
        try:
            if task.kind == "video":
                chunk = task.chunk
                if chunk is not None:
                    return TaskOutcome(label_video(self.detector, settings, task.path, folder, chunk.read_from, chunk.end))
                result = label_video(self.detector, settings, task.path, folder)
                result.detections = finish_video(folder, task.path, settings, result.phrases)
                return TaskOutcome(result)
            label = label_bag if task.kind == "bag" else label_images
            return TaskOutcome(label(self.detector, settings, task.path, folder))
        except InputFailed as error:
            return TaskOutcome(None, str(error))


def connect(address: str | None, num_cpus: int) -> bool:
    """Connect to the cluster at ``address`` ("auto", "ray://host:port"), or start a local instance in this
    process with ``num_cpus`` CPUs; nothing when Ray is already initialized. True when this call started it
    (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    return True


def default_workers(cpus_per_worker: int, gpus_per_worker: float) -> int:
    """As many workers as the connected cluster's CPUs (or GPUs, when each worker takes some) allow."""
    import ray

    resources = ray.cluster_resources()
    if gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // cpus_per_worker))


class WorkerPool:
    """``workers`` LabelWorker actors. Starting or replacing one returns the reference its ``load`` answers
    on (its pid once the model is loaded), so the driver keeps working while models load. The pool outlives
    a run: the settings travel with each task."""

    def __init__(self, make_detector: Callable, workers: int, cpus_per_worker: int = 1,
                 gpus_per_worker: float = 0.0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1; got {workers}")
        if cpus_per_worker < 1 or gpus_per_worker < 0:
            raise ValueError(f"cpus per worker must be >= 1 and GPUs per worker >= 0; got {cpus_per_worker}, "
                             f"{gpus_per_worker}")
        self.make_detector, self.size = make_detector, workers
        self.cpus, self.gpus = cpus_per_worker, gpus_per_worker
        self.actors: list = [None] * workers

    def start(self, slot: int, prompt: str):
        """(Re)create the actor of ``slot``; returns the reference of its ``load`` call."""
        import ray

        if self.actors[slot] is not None:
            ray.kill(self.actors[slot], no_restart=True)
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)(LabelWorker)
        self.actors[slot] = remote.remote(self.make_detector, self.cpus)
        return self.actors[slot].load.remote(prompt)

    def ready(self, slot: int, prompt: str):
        """The reference of the pid of ``slot``'s actor once it is ready for ``prompt`` (started if need be)."""
        if self.actors[slot] is None:
            return self.start(slot, prompt)
        return self.actors[slot].check.remote(prompt)

    def submit(self, slot: int, task: Task):
        return self.actors[slot].run.remote(task)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        self.actors = [None] * self.size
