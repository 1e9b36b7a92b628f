"""`gdino bench detector --floor`: the forward's operations at this machine's best product rate, the time no
implementation of the same forward can beat here."""
from __future__ import annotations

import json

import pytest
import torch

from perception.bench.floor import best_product_gflops, forward_gflop
from perception.cli.main import main


class TwoParts(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.text_backbone = torch.nn.Linear(16, 8)
        self.head = torch.nn.Linear(32, 64)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.head(image).sum() + self.text_backbone(text).sum()


def test_the_forward_is_counted_without_its_text_encoder():
    model = TwoParts()
    gflop = forward_gflop(lambda: model(torch.zeros(5, 16), torch.zeros(10, 32)))
    assert gflop * 1e9 == pytest.approx(2 * 10 * 32 * 64)  # the head's product only
    assert forward_gflop(lambda: model(torch.zeros(5, 16), torch.zeros(10, 32)), leave_out="nothing") * 1e9 == \
        pytest.approx(2 * 10 * 32 * 64 + 2 * 5 * 16 * 8)


def test_the_best_product_rate_is_positive_and_finite():
    rate = best_product_gflops(torch.float32, torch.device("cpu"), shapes=((256, 128, 256),), repeats=2)
    assert 0.0 < rate < float("inf")


def test_bench_detector_floor_is_below_both_timings(capsys):
    assert main(["bench", "detector", "--model", "tiny", "--sizes", "64x96", "--repeats", "1", "--dtype", "float32",
                 "--floor", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    floor = result["floor"]
    assert floor["dtype"] == "float32" and floor["gflop"] > 0
    assert floor["floor_ms"] == pytest.approx(1000 * floor["gflop"] / floor["product_gflops"], rel=0.02, abs=0.002)
    assert floor["floor_ratio"] == pytest.approx(floor["floor_ms"] / result["reference_ms"], rel=0.02, abs=0.002)
    # A floor, not an estimate: both real forwards take longer.
    assert floor["floor_ms"] < result["ours_ms"] and floor["floor_ms"] < result["reference_ms"]


def test_bench_detector_floor_with_phrases_is_a_usage_error(capsys):
    assert main(["bench", "detector", "--model", "tiny", "--phrases", "10", "--floor"]) == 2
    assert "the floor (--floor) is measured with the short prompt: drop --phrases" in capsys.readouterr().err
