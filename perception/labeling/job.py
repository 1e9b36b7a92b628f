"""The driver of `gdino label`: inputs to tasks, tasks to the pool's workers, results to finished outputs.

Output folder layout::

    summary.json          each input's outcome (perception.labeling.summary), replaced after every input
    coco.json             the dataset of every finished input (perception.labeling.dataset)
    inputs/<key>/         one folder per finished input (perception.labeling.process), moved in when complete
    partial/              tasks' folders while they work; locked by the run, removed at its end
    yolo/                 data.yaml and images.txt, with --yolo

A task whose worker dies is tried again, up to ``retries`` more times, on a new worker; then its input
is failed. A task that raises is a fault of ours and fails its input at once (with the reason). The
chunks of a long video are tasks of their own; the driver joins them (perception.labeling.chunks) when
the last one is back. Ctrl-C or SIGTERM: no task starts any more, the ones running finish and their
inputs are finished, the others are ``interrupted`` in the summary, the dataset is written and
KeyboardInterrupt is raised; a second signal stops at once (the inputs in progress are interrupted too).
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from perception.labeling.chunks import Chunk, join_records, plan_chunks, write_joined
from perception.labeling.dataset import read_fragment, write_coco, write_yolo_lists
from perception.labeling.inputs import LabelInput
from perception.labeling.process import MOT_NAME, TRACKS_NAME, WorkResult, finish_video, read_records
from perception.labeling.settings import LabelSettings
from perception.labeling.summary import FINISHED, InputRecord, read_summary, skippable, skipped, write_summary
from perception.labeling.workers import Task, WorkerPool
from perception.model.tokenizer import parse_prompt
from perception.pipeline_stages import StopSignals

logger = logging.getLogger(__name__)


class LabelSetupError(RuntimeError):
    """The run cannot start (output folder in use, unreadable summary, a model that will not load)."""


@dataclass
class _Work:
    """One input being labeled: its tasks (one, or one per chunk), their results and attempts."""

    item: LabelInput
    record: InputRecord
    chunks: list[Chunk | None]
    results: dict[int, WorkResult] = field(default_factory=dict)
    folders: dict[int, Path] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    running: int = 0
    failure: str = ""

    @property
    def complete(self) -> bool:
        return not self.running and (bool(self.failure) or len(self.results) == len(self.chunks))


def _lock(partial: Path) -> int:
    """Create ``partial`` and hold its lock (the bag writer's: a leftover of a killed run is emptied)."""
    from perception.bags.output import OutputPathError, claim_partial

    try:
        return claim_partial(partial)
    except OutputPathError:
        raise LabelSetupError(f"{partial.parent} is in use by another gdino label") from None


def _chunks(item: LabelInput, settings: LabelSettings) -> list[Chunk | None]:
    """One task for a bag, an image folder or a short video; one per chunk for a long video."""
    if item.kind != "video" or settings.chunk_seconds <= 0 or settings.annotate:
        return [None]  # an annotated video is written by one worker, in order
    from perception.video.decode import VideoInputError, probe

    try:
        info = probe(item.path)
    except VideoInputError:
        return [None]  # the worker reports it, as for any unreadable input
    duration = info.frames / float(info.frame_rate) if info.frames and info.frame_rate else 0.0
    chunks = plan_chunks(duration, settings.chunk_seconds, settings.chunk_overlap)
    return [None] if len(chunks) == 1 else list(chunks)


class LabelRun:
    """One run over ``inputs`` into ``output`` (which must exist) with ``pool``. ``on_event(name, input,
    attempt, worker pid)`` is called as a task starts (``"start"``) and as an input is finished (``"finished"``)."""

    def __init__(self, pool: WorkerPool, inputs: list[LabelInput], output: Path, settings: LabelSettings,
                 retries: int = 2, progress: bool = False, on_event: Callable | None = None) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0; got {retries}")
        self.pool, self.inputs, self.output, self.settings = pool, inputs, output, settings
        self.retries, self.progress, self.on_event = retries, progress, on_event or (lambda *event: None)
        self.partial = output / "partial"
        self.records: dict[str, InputRecord] = {}
        self._frames_done = 0

    def run(self) -> list[InputRecord]:
        """Label every input; returns the records in input order (also in summary.json)."""
        lock = _lock(self.partial)
        try:
            try:
                previous = read_summary(self.output)
            except ValueError as error:
                raise LabelSetupError(str(error)) from error
            works = self._plan(previous)
            stop = threading.Event()
            try:
                with StopSignals(stop):
                    self._schedule(works, stop)
            finally:
                for work in works:
                    if work.record.outcome == "pending":
                        work.record.outcome = "interrupted"
                self._write_dataset()
            if stop.is_set():
                left = sum(r.outcome == "interrupted" for r in self.records.values())
                logger.warning("stopped: %d of %d inputs interrupted, the others finished (%s)", left,
                               len(self.records), self.output / "summary.json")
                raise KeyboardInterrupt
            return list(self.records.values())
        finally:
            shutil.rmtree(self.partial, ignore_errors=True)
            os.close(lock)

    def _plan(self, previous: dict[str, InputRecord]) -> list[_Work]:
        digest, works = self.settings.digest(), []
        for item in self.inputs:
            try:
                size, mtime = item.fingerprint()
            except OSError as error:
                self.records[item.path] = InputRecord(item.path, item.kind, item.key, 0, 0, digest, "failed",
                                                      reason=f"cannot read it: {error.strerror}")
                continue
            earlier = previous.get(item.path)
            if skippable(earlier, item, (size, mtime), digest, self.output):
                self.records[item.path] = skipped(earlier)
                continue
            record = self.records[item.path] = InputRecord(item.path, item.kind, item.key, size, mtime, digest, "pending")
            works.append(_Work(item, record, _chunks(item, self.settings)))
        self._write_summary()
        return works

    def _schedule(self, works: list[_Work], stop: threading.Event) -> None:
        import ray

        queue = deque((work, index) for work in works for index in range(len(work.chunks)))
        if not queue:
            return
        loading = {self.pool.ready(slot, self.settings.prompt): slot for slot in range(self.pool.size)}
        idle: list[int] = []
        pids: dict[int, int] = {}
        running: dict = {}
        bar = tqdm(total=len(queue), unit="task", disable=not self.progress, dynamic_ncols=True)
        started, told = time.perf_counter(), False
        try:
            while running or (queue and not stop.is_set()):
                while idle and queue and not stop.is_set():
                    self._submit(idle.pop(), *queue.popleft(), running, pids)
                if stop.is_set() and not told:
                    told = True
                    logger.warning("stopping: finishing the %d tasks in progress, starting no other "
                                   "(a second Ctrl-C stops at once)", len(running))
                done, _ = ray.wait(list(loading) + list(running), num_returns=1, timeout=0.5)
                for ref in done:
                    if ref in loading:
                        slot = loading.pop(ref)
                        pids[slot] = self._loaded(ref)
                        idle.append(slot)
                        continue
                    slot, work, index, folder = running.pop(ref)
                    work.running -= 1
                    if self._collect(ref, work, index, folder, queue):
                        idle.append(slot)
                    else:
                        loading[self.pool.start(slot, self.settings.prompt)] = slot
                    if work.complete:
                        self._finish(work, queue)
                    bar.update(1)
                    bar.set_postfix_str(f"{sum(r.outcome != 'pending' for r in self.records.values())}/"
                                        f"{len(self.records)} inputs, "
                                        f"{self._frames_done / (time.perf_counter() - started):.1f} frames/s")
        finally:
            bar.close()

    def _loaded(self, ref) -> int:
        import ray

        try:
            return ray.get(ref)
        except Exception as error:
            raise LabelSetupError(f"a worker could not load the model: {_cause(error)}") from error

    def _submit(self, slot: int, work: _Work, index: int, running: dict, pids: dict[int, int]) -> None:
        attempt = work.attempts[index] = work.attempts.get(index, 0) + 1
        chunk = work.chunks[index]
        name = work.item.key + ("" if chunk is None else f".chunk{index}")
        folder = self.partial / f"{name}.{attempt}"
        task = Task(work.item.kind, work.item.path, str(folder), self.settings, chunk)
        running[self.pool.submit(slot, task)] = (slot, work, index, folder)
        work.running += 1
        self.on_event("start", work.item, attempt, pids[slot])

    def _collect(self, ref, work: _Work, index: int, folder: Path, queue: deque) -> bool:
        """Take one task's answer into its work; False when its worker died (the pool must replace it)."""
        import ray
        from ray.exceptions import RayActorError, WorkerCrashedError

        try:
            outcome = ray.get(ref)
        except (RayActorError, WorkerCrashedError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            attempts = work.attempts[index]
            if work.failure:
                pass
            elif attempts <= self.retries:
                logger.warning("%s: its worker died (%s); trying again (attempt %d of %d)", work.item.path,
                               type(error).__name__, attempts + 1, self.retries + 1)
                queue.appendleft((work, index))
            else:
                work.failure = f"its worker died on each of {attempts} attempts ({type(error).__name__})"
            return False
        except Exception as error:  # it raised: a fault of ours, the same on any worker
            work.failure = f"internal error: {_cause(error)}"
        else:
            if outcome.failure:
                work.failure = outcome.failure
            else:
                work.results[index], work.folders[index] = outcome.result, folder
                self._frames_done += outcome.result.frames
        if work.failure:
            queue_items = [item for item in queue if item[0] is not work]
            queue.clear()
            queue.extend(queue_items)
        return True

    def _finish(self, work: _Work, queue: deque) -> None:
        """Move a complete input's outputs into place (joining its chunks first) and record its outcome."""
        record = work.record
        record.attempts = max(work.attempts.values(), default=0)
        if not work.failure:
            try:
                folder, result = self._joined(work) if len(work.chunks) > 1 else (work.folders[0], work.results[0])
                target = self.output / "inputs" / work.item.key
                target.parent.mkdir(exist_ok=True)
                shutil.rmtree(target, ignore_errors=True)
                os.rename(folder, target)
            except (OSError, ValueError) as error:
                work.failure = f"its outputs could not be finished: {error}"
        if work.failure:
            record.outcome, record.reason = "failed", work.failure
            logger.warning("%s failed: %s", work.item.path, work.failure)
        else:
            record.outcome = "damaged" if result.damage else "done"
            record.outputs = f"inputs/{work.item.key}"
            record.frames, record.detections, record.seconds = result.frames, result.detections, round(result.seconds, 3)
            record.reason, record.damage = result.reason, result.damage
            if result.damage:
                logger.warning("%s is damaged: %s", work.item.path, result.reason)
        for folder in work.folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        self._write_summary()
        self.on_event("finished", work.item, record.attempts, None)

    def _joined(self, work: _Work) -> tuple[Path, WorkResult]:
        chunks = [chunk for chunk in work.chunks if chunk is not None]
        records, joins = join_records(chunks, [read_records(work.folders[i] / TRACKS_NAME) for i in range(len(chunks))])
        folder = self.partial / f"{work.item.key}.joined"
        folder.mkdir(parents=True, exist_ok=True)
        write_joined(folder, TRACKS_NAME, MOT_NAME, records)
        results = [work.results[i] for i in range(len(chunks))]
        damage: dict = {}
        for result in results:
            for kind, count in result.damage.items():
                damage[kind] = damage.get(kind, 0) + count
        detections = finish_video(folder, work.item.path, self.settings, results[0].phrases)
        logger.info("%s: %d chunks joined, %d tracks continued across their boundaries", work.item.path, len(chunks), joins)
        reason = "; ".join(f"chunk {i}: {r.reason}" for i, r in enumerate(results) if r.reason)
        return folder, WorkResult(len(records), detections, sum(r.seconds for r in results), damage, reason,
                                  results[0].phrases)

    def _write_summary(self) -> None:
        write_summary(self.output, self.settings.as_dict(), self.settings.digest(), list(self.records.values()))

    def _write_dataset(self) -> None:
        """summary.json, coco.json of every finished input and, with --yolo, the YOLO lists."""
        self._write_summary()
        finished = [r for r in self.records.values() if r.outcome in FINISHED and r.outputs]
        phrases = parse_prompt(self.settings.prompt)[0]
        coco = write_coco(self.output, phrases, ((r.input, r.key, read_fragment(self.output / r.outputs))
                                                 for r in finished))
        if self.settings.yolo:
            write_yolo_lists(self.output, phrases, coco)

def _cause(error: Exception) -> str:
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"
