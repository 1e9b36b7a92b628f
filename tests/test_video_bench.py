"""`gdino bench video --json`: pipeline and model-only frames per second on the same frames and batch size."""
from __future__ import annotations

import json

import pytest
from video_samples import vtest_path

from perception.cli.main import main


def test_bench_reports_both_rates_and_their_ratio(capsys):
    args = ["bench", "video", "--json", "--input", str(vtest_path()), "--end", "2", "--batch-size", "4",
            "--weights", "random:tiny", "--shortest-edge", "64", "--longest-edge", "96", "--rounds", "3"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 20 and result["frame_size"] == [768, 576] and result["batch_size"] == 4
    assert result["model_fps"] > 0 and result["pipeline_fps"] > 0
    assert result["ratio"] == pytest.approx(result["pipeline_fps"] / result["model_fps"], abs=2e-3)
    rounds = result["rounds"]
    assert len(rounds) == 3 and all(r["model_fps"] > 0 and r["pipeline_fps"] > 0 for r in rounds)
    assert result["model_fps"] == sorted(r["model_fps"] for r in rounds)[1]  # the median
    assert result["pipeline_fps"] == sorted(r["pipeline_fps"] for r in rounds)[1]
