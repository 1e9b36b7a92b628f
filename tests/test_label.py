"""`gdino label` on a real local Ray instance (one for the module, 2 CPUs): generated videos, a generated
bag, an image folder, damaged and unreadable inputs, with the bundled model (its tracks are real, so
joining ids across a chunk boundary is tested on objects that move through it).

Workers are real Ray actors in their own processes; a worker is killed with SIGKILL while it works.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import pytest
from pycocotools.coco import COCO
from rosbags.rosbag2 import StoragePlugin
from test_ros_bag import write_input_bag
from video_samples import damaged_copy, read_jsonl, synthetic_clip

from perception.cli.main import main
from perception.cli.model_args import build_detector
from perception.labeling.inputs import expand_inputs
from perception.labeling.job import LabelRun
from perception.labeling.settings import LabelSettings
from perception.labeling.workers import WorkerPool
from perception.video.decode import VideoReader

ray = pytest.importorskip("ray")

PROMPT = "red heart . blue star . blue circle . purple circle . red star . blue heart . green square ."
MODEL = argparse.Namespace(weights=None, preset=None, box_threshold=None, text_threshold=None, nms_iou=None,
                           present_phrase_threshold=None, present_phrase_iou=None, device="cpu", dtype="float32",
                           batch_size=4, shortest_edge=None, longest_edge=None)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(local_ray):
    """Two workers with the bundled model, shared by the tests that call the library directly."""
    workers = WorkerPool(functools.partial(build_detector, MODEL), 2)
    yield workers
    workers.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    paths = {"v1": folder / "v1.mp4", "v2": folder / "v2.mp4", "long": folder / "long.mp4", "bag": folder / "bag",
             "images": folder / "images", "truncated": folder / "truncated.mkv", "bogus": folder / "bogus.mp4"}
    synthetic_clip(paths["v1"], 16, seed=18)
    synthetic_clip(paths["v2"], 16, seed=19)
    synthetic_clip(paths["long"], 30, seed=12)
    synthetic_clip(folder / "whole.mkv", 16, seed=14, container_format="matroska")
    damaged_copy(folder / "whole.mkv", paths["truncated"], keep=2 / 3)
    write_input_bag(paths["bag"], StoragePlugin.MCAP)  # 4 frames on each of 2 cameras, one truncated image
    paths["images"].mkdir()
    synthetic_clip(folder / "stills.mkv", 3, seed=15, container_format="matroska")
    for name, frame in zip("abc", VideoReader(str(folder / "stills.mkv"))):
        cv2.imwrite(str(paths["images"] / f"{name}.png"), frame.image[:, :, ::-1])
    (paths["images"] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"no image here")
    paths["bogus"].write_text("not a video\n")
    return paths


def boxes_of_jsonl(lines: list[dict], every: int) -> dict[int, list]:
    """frame -> sorted (label, box, score, id) of the matched tracks, for every ``every``-th frame."""
    return {line["frame"]: sorted((t["label"], t["box"], t["score"], t["id"]) for t in line["tracks"] if t["matched"])
            for line in lines if line["frame"] % every == 0}


def boxes_of_coco(coco: COCO, image_ids: list[int], key: str) -> dict[int, list]:
    found = {}
    for image in coco.loadImgs(image_ids):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        found[image[key]] = sorted((coco.cats[a["category_id"]]["name"],
                                    [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]],
                                    a["score"], a["track_id"]) for a in annotations)
    return found


def assert_same_objects(found: list, expected: list, box_abs: float, score_abs: float = 0.0) -> None:
    """(label, box, score, ...) lists: same labels in the same order, boxes and scores within the tolerances."""
    assert [obj[0] for obj in found] == [obj[0] for obj in expected]
    for (_, box, score, *_), (_, wanted, wanted_score, *_) in zip(found, expected):
        assert box == pytest.approx(wanted, abs=box_abs) and score == pytest.approx(wanted_score, abs=score_abs)


# One unit of the JSON lines' rounding (boxes to 1/100 px, scores to 4 decimals), for runs in other processes.
ROUNDING_UNIT = {"box_abs": 0.011, "score_abs": 1.1e-4}


def assert_same_boxes(found: dict, expected: dict, box_abs: float = 1e-6, score_abs: float = 0.0) -> None:
    """Same frames, labels and ids; boxes equal up to the float rounding of x + (x1 - x0) and scores equal,
    unless wider tolerances are given."""
    assert found.keys() == expected.keys()
    for frame in expected:
        assert [obj[3] for obj in found[frame]] == [obj[3] for obj in expected[frame]]
        assert_same_objects(found[frame], expected[frame], box_abs=box_abs, score_abs=score_abs)


@pytest.fixture(scope="module")
def first_run(local_ray, inputs, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "labels"
    arguments = [str(inputs[name]) for name in ("v1", "v2", "truncated", "bag", "images")]
    started = time.perf_counter()
    code = main(["label", *arguments, "--prompt", PROMPT, "--output", str(output), "--every", "2", "--jpeg", "--yolo",
                 "--workers", "2", "-q"])
    return code, output, time.perf_counter() - started


def test_coco_boxes_equal_each_inputs_json_lines(first_run, inputs):
    code, output, _ = first_run
    assert code == 3  # the truncated video, the bag's truncated image and the broken PNG are damage
    summary = json.loads((output / "summary.json").read_text())
    records = {Path(r["input"]).name: r for r in summary["inputs"]}
    assert {name: r["outcome"] for name, r in records.items()} == {
        "v1.mp4": "done", "v2.mp4": "done", "truncated.mkv": "damaged", "bag": "damaged", "images": "damaged"}
    assert records["truncated.mkv"]["damage"]["missing_frames"] > 0
    assert records["bag"]["damage"] == {"malformed_data_size": 1}
    assert records["images"]["damage"] == {"unreadable_images": 1}
    coco = COCO(str(output / "coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [p.strip() for p in PROMPT.split(".") if p.strip()]
    by_input: dict[str, list[int]] = {}
    for image in coco.dataset["images"]:
        by_input.setdefault(Path(image["input"]).name, []).append(image["id"])
        assert (output / image["file_name"]).is_file()  # --jpeg
        label_file = output / image["file_name"].replace("/images/", "/labels/").replace(".jpg", ".txt")
        assert len(label_file.read_text().splitlines()) == len(coco.getAnnIds(imgIds=[image["id"]]))  # --yolo
    for name in ("v1.mp4", "v2.mp4", "truncated.mkv"):
        lines = read_jsonl(output / records[name]["outputs"] / "tracks.jsonl")
        assert len(lines) == records[name]["frames"]
        assert_same_boxes(boxes_of_coco(coco, by_input[name], "frame"), boxes_of_jsonl(lines, every=2))
    bag_lines = read_jsonl(output / records["bag"]["outputs"] / "tracks.jsonl")
    assert len(bag_lines) == 8
    for camera in ("/cam_a/image_raw", "/cam_b/image_raw/compressed"):
        ids = [i for i in by_input["bag"] if coco.imgs[i]["camera"] == camera]
        expected = {line["frame"]: sorted((t["label"], t["box"], t["score"], t["id"]) for t in line["tracks"])
                    for line in bag_lines if line["camera"] == camera and line["frame"] % 2 == 0}
        assert_same_boxes(boxes_of_coco(coco, ids, "frame"), expected)
    image_lines = [line for line in read_jsonl(output / records["images"]["outputs"] / "detections.jsonl")]
    assert ["error" in line for line in image_lines] == [False, False, True, False]  # a, b, broken, c
    expected = {line["frame"]: sorted((t["label"], t["box"], t["score"], t["id"]) for t in line["tracks"])
                for line in image_lines if "tracks" in line}
    assert_same_boxes(boxes_of_coco(coco, by_input["images"], "frame"), expected)
    assert sum(len(coco.getAnnIds(imgIds=by_input[n])) for n in by_input) == len(coco.dataset["annotations"]) > 0


def test_json_lines_equal_gdino_video_alone(first_run, inputs, tmp_path):
    _, output, _ = first_run
    key = expand_inputs([str(inputs["v1"])])[0].key
    assert main(["video", str(inputs["v1"]), "--prompt", PROMPT, "--output", str(tmp_path / "v1.mp4"), "--quiet"]) == 0
    alone, batch = read_jsonl(tmp_path / "v1.jsonl"), read_jsonl(output / "inputs" / key / "tracks.jsonl")
    assert [line["frame"] for line in batch] == [line["frame"] for line in alone]
    # The worker computes with 1 torch thread, this process with the machine's; BLAS and oneDNN sum in an
    # order that depends on the thread count, and each process times its own linear kernel (model/linear.py).
    # A float32 ulp can then move the last rounded digit (seen in CI: score 0.6451 against 0.6452).
    assert_same_boxes(boxes_of_jsonl(batch, 1), boxes_of_jsonl(alone, 1), **ROUNDING_UNIT)
    assert sum(len(line["tracks"]) for line in alone) > 0


def test_rerun_skips_inputs_done_with_the_same_settings(first_run, inputs):
    code, output, _ = first_run
    arguments = [str(inputs[name]) for name in ("v1", "v2", "truncated", "bag", "images")]
    before = {p: p.stat().st_mtime_ns for p in (output / "inputs").rglob("*")}
    coco_before = (output / "coco.json").read_text()
    # No worker is started when every input is skipped: the pool would need a model load of seconds.
    assert main(["label", *arguments, "--prompt", PROMPT, "--output", str(output), "--every", "2", "--jpeg", "--yolo",
                 "--workers", "2", "-q"]) == 3  # still 3: the damaged inputs are in the dataset as they were
    records = json.loads((output / "summary.json").read_text())["inputs"]
    assert [(r["outcome"], r["previous"]) for r in records] == [
        ("skipped", "done"), ("skipped", "done"), ("skipped", "damaged"), ("skipped", "damaged"), ("skipped", "damaged")]
    assert {p: p.stat().st_mtime_ns for p in (output / "inputs").rglob("*")} == before
    assert (output / "coco.json").read_text() == coco_before
    # Other settings (every 4th frame): nothing is skipped.
    digest = json.loads((output / "summary.json").read_text())["settings_hash"]
    settings = json.loads((output / "summary.json").read_text())["settings"]
    assert settings["every"] == 2 and digest == records[0]["settings_hash"]


def run_library(pool, names, inputs, output, retries=2, on_event=None, **settings) -> dict[str, dict]:
    items = expand_inputs([str(inputs[name]) for name in names])
    output.mkdir(exist_ok=True)
    LabelRun(pool, items, output, LabelSettings(PROMPT, **settings), retries, on_event=on_event).run()
    return {Path(r["input"]).name: r for r in json.loads((output / "summary.json").read_text())["inputs"]}


def test_a_chunked_video_has_the_same_detections_and_joined_track_ids(pool, inputs, tmp_path):
    """The 3 s video in 2 chunks of 1.5 s, the second reading from 0.5 s (1 s of overlap), against one task.

    Compared per frame: the matched boxes (label, box, score) are the same; the ids map one to one between
    the two runs over the whole video, so a track crossing the 1.5 s boundary keeps one id in the chunked
    run exactly where it does in the unchunked one."""
    whole = run_library(pool, ["long"], inputs, tmp_path / "whole", chunk_seconds=0)["long.mp4"]
    chunked = run_library(pool, ["long"], inputs, tmp_path / "chunked", chunk_seconds=1.5, chunk_overlap=1.0)["long.mp4"]
    assert whole["outcome"] == chunked["outcome"] == "done"
    one = read_jsonl(tmp_path / "whole" / whole["outputs"] / "tracks.jsonl")
    two = read_jsonl(tmp_path / "chunked" / chunked["outputs"] / "tracks.jsonl")
    assert [line["time"] for line in two] == [line["time"] for line in one] and len(one) == 30
    ids: dict[int, int] = {}
    for a, b in zip(one, two):
        matched_a = sorted((t["label"], t["box"], t["score"], t["id"]) for t in a["tracks"] if t["matched"])
        matched_b = sorted((t["label"], t["box"], t["score"], t["id"]) for t in b["tracks"] if t["matched"])
        # Other batches (batch boundaries move with the chunk): a float32 ulp may move a 1/100-px rounding.
        assert_same_objects(matched_b, matched_a, **ROUNDING_UNIT)
        for (*_, id_a), (*_, id_b) in zip(matched_a, matched_b):
            assert ids.setdefault(id_a, id_b) == id_b  # one chunked id per unchunked id, all along
    assert len(set(ids.values())) == len(ids)
    before = {t["id"] for line in one if 1.0 <= line["time"] < 1.5 for t in line["tracks"] if t["matched"]}
    after = {t["id"] for line in one if 1.5 <= line["time"] < 2.0 for t in line["tracks"] if t["matched"]}
    crossing = before & after
    assert crossing, "no track crosses the chunk boundary: the test would prove nothing"
    coco = json.loads((tmp_path / "chunked" / "coco.json").read_text())
    assert len(coco["images"]) == 30


def test_a_killed_workers_input_is_tried_again_then_failed(pool, inputs, tmp_path):
    """v1.mp4's worker is killed (SIGKILL) once mid-input: the input is done on the retry, whole and once in
    the dataset. v2.mp4's worker is killed on every attempt: failed after 1 + retries attempts. bogus.mp4 is no
    video: failed at once, never retried. The others carry on."""
    output = tmp_path / "out"
    killed: list[str] = []

    def kill_when_working(folder: Path, pid: int) -> None:
        tracks, deadline = folder / "tracks.jsonl", time.monotonic() + 120
        while time.monotonic() < deadline:
            if tracks.is_file() and tracks.read_text().count("\n") >= 2:  # frames written: mid-input
                os.kill(pid, signal.SIGKILL)
                killed.append(folder.name)
                return
            time.sleep(0.02)

    def on_event(name, item, attempt, pid):
        if name == "start" and (item.path.endswith("v1.mp4") and attempt == 1 or item.path.endswith("v2.mp4")):
            folder = output / "partial" / f"{item.key}.{attempt}"
            threading.Thread(target=kill_when_working, args=(folder, pid), daemon=True).start()

    records = run_library(pool, ["v1", "v2", "bogus"], inputs, output, retries=1, on_event=on_event, chunk_seconds=0)
    assert len(killed) == 3
    assert (records["v1.mp4"]["outcome"], records["v1.mp4"]["attempts"]) == ("done", 2)
    assert (records["v2.mp4"]["outcome"], records["v2.mp4"]["attempts"]) == ("failed", 2)
    assert "its worker died on each of 2 attempts" in records["v2.mp4"]["reason"]
    assert (records["bogus.mp4"]["outcome"], records["bogus.mp4"]["attempts"]) == ("failed", 1)
    assert "bogus.mp4" in records["bogus.mp4"]["reason"]
    lines = read_jsonl(tmp_path / "out" / records["v1.mp4"]["outputs"] / "tracks.jsonl")
    assert [line["frame"] for line in lines] == list(range(16))
    coco = json.loads((output / "coco.json").read_text())
    assert sorted(image["frame"] for image in coco["images"]) == list(range(16))  # v1.mp4 once, nothing of v2
    assert not (output / "partial").exists() and sorted(p.name for p in (output / "inputs").iterdir()) == [
        expand_inputs([str(inputs["v1"])])[0].key]


def test_ctrl_c_stops_at_an_input_boundary_with_a_valid_summary(pool, inputs, tmp_path):
    """SIGINT as the first input is finished: inputs already started are finished, no other one starts."""
    started, sent = set(), []

    def on_event(name, item, attempt, pid):
        if name == "start":
            started.add(Path(item.path).name)
        if name == "finished" and not sent:
            sent.append(item.path)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_library(pool, ["images", "v1", "v2"], inputs, tmp_path / "out", on_event=on_event)
    records = {Path(r["input"]).name: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"]}
    assert records["images"]["outcome"] == "damaged"  # the first one, finished: its broken PNG
    assert {name for name, r in records.items() if r["outcome"] in ("done", "damaged")} == started
    assert {name for name, r in records.items() if r["outcome"] == "interrupted"} == set(records) - started != set()
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert {Path(image["input"]).name for image in coco["images"]} == started
    assert not (tmp_path / "out" / "partial").exists()
