"""scripts/gpu_check.sh's checks: how detections are paired and judged, the goals' report, and the dry run."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.bench.gpu_check import DRY_RUN, FULL, goals, match_detections, ulp
from perception.types import Detections

ROOT = Path(__file__).resolve().parents[1]


def detections(boxes, scores, labels) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), list(labels))


EXPECTED = detections([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.6], ["a cat", "a dog"])


def test_detections_pair_by_label_and_overlap_whatever_their_order():
    swapped = detections([[60, 60, 90, 90.01], [10, 10, 50, 50]], [0.6, 0.9], ["a dog", "a cat"])
    result = match_detections(EXPECTED, swapped, torch.float16, 8, 100, 0.35)
    assert result["ok"] and result["max_box_error_px"] == pytest.approx(0.01, abs=1e-3)


@pytest.mark.parametrize("actual, why", [
    (detections([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9 + 9 * ulp(torch.float16, 1.0), 0.6],
                ["a cat", "a dog"]), "score"),
    (detections([[10, 10, 50, 51], [60, 60, 90, 90]], [0.9, 0.6], ["a cat", "a dog"]), "box"),
    (detections([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.6], ["a cat", "a cow"]), "label"),
    (detections([[10, 10, 50, 50]], [0.9], ["a cat"]), "missing"),
    (detections([[10, 10, 50, 50], [60, 60, 90, 90], [0, 0, 5, 5]], [0.9, 0.6, 0.5], ["a cat", "a dog", "a dog"]),
     "extra, well above the threshold"),
])
def test_a_detection_off_by_more_than_the_tolerance_or_unpaired_fails(actual, why):
    # float16 at 8 ulps: a score within 0.0078, a coordinate of a 100-px image within 0.5 px.
    assert not match_detections(EXPECTED, actual, torch.float16, 8, 100, 0.35)["ok"], why


def test_a_detection_alone_on_one_side_passes_only_near_the_threshold():
    edge = detections([[0, 0, 5, 5]], [0.355], ["a cow"])  # within 0.0078 of 0.35: the other side may be 0.349
    both = Detections(*(np.concatenate([a, b]) for a, b in ((EXPECTED.boxes, edge.boxes), (EXPECTED.scores, edge.scores))),
                      EXPECTED.labels + edge.labels)
    assert match_detections(EXPECTED, both, torch.float16, 8, 100, 0.35)["ok"]
    assert match_detections(both, EXPECTED, torch.float16, 8, 100, 0.35)["ok"]


def test_the_goals_are_reported_as_not_measured_without_a_gpu():
    report = goals(torch.device("cpu"), DRY_RUN, {"runs": {}})
    assert report["fps"]["measured"] is False and report["fps"]["met"] is None
    assert report["latency_ratio"]["measured"] is False


def test_the_full_plan_measures_what_the_issue_asks():
    assert set(FULL.bench_sizes) == {(800, 1333), (544, 960)} and set(FULL.bench_batches) == {1, 4}
    assert set(FULL.bench_dtypes) == {"float32", "float16"} and set(FULL.half_dtypes) == {"float16", "bfloat16"}


@pytest.mark.slow
def test_the_cpu_dry_run_writes_the_json_and_passes(tmp_path):
    result = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", str(tmp_path)],
                            capture_output=True, text=True, timeout=900, cwd=ROOT)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result.returncode == 0 and report["ok"], result.stderr
    assert set(report["steps"]) == {"build", "tests", "detector_comparison", "benchmark"} and report["finished"]
    assert report["goals"]["fps"]["measured"] is False
