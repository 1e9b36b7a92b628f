"""`gdino bench attention`, through its own parser (perception.cli.bench wires it under `gdino bench`)."""
from __future__ import annotations

import argparse
import json

import pytest

from perception.cli.bench_attention import register_bench
from perception.cli.errors import CliError


def run_bench(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gdino bench")
    register_bench(parser.add_subparsers(dest="bench", required=True))
    args = parser.parse_args(["attention", *argv])
    return args.run(args)


def test_json_reports_both_implementations_at_encoder_shapes(capsys) -> None:
    assert run_bench("--json", "--frame", "64x96", "--frame", "33x47", "--repeats", "1") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["implementation"].startswith("cpu (")
    first, second = report["frames"]
    assert first["frame"] == "64x96" and first["level_shapes"] == [[8, 12], [4, 6], [2, 3], [1, 2]]
    assert first["queries"] == 96 + 24 + 6 + 2
    assert (first["heads"], first["channels"], first["levels"], first["points"]) == (8, 256, 4, 4)
    assert second["level_shapes"] == [[5, 6], [3, 3], [2, 2], [1, 1]]
    for row in report["frames"]:
        assert row["cpu_kernel_ms"] > 0 and row["reference_ms"] > 0
        assert row["speedup"] == pytest.approx(row["reference_ms"] / row["cpu_kernel_ms"])
        assert row["max_abs_difference"] <= 1e-5


def test_backward_reports_each_gradient_against_the_reference(capsys) -> None:
    assert run_bench("--json", "--backward", "--frame", "40x56", "--repeats", "1") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"].endswith("forward and backward")
    (row,) = report["frames"]
    assert row["cpu_kernel_backward_ms"] > 0 and row["reference_backward_ms"] > 0
    assert row["backward_speedup"] == pytest.approx(row["reference_backward_ms"] / row["cpu_kernel_backward_ms"])
    differences = row["backward_max_relative_difference"]
    assert set(differences) == {"value", "sampling_locations", "attention_weights"}
    assert all(0 <= difference <= 1e-5 for difference in differences.values())


def test_forward_only_by_default(capsys) -> None:
    assert run_bench("--json", "--frame", "40x56", "--repeats", "1") == 0
    (row,) = json.loads(capsys.readouterr().out)["frames"]
    assert "cpu_kernel_backward_ms" not in row


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--frame", "800"], "--frame must be HEIGHTxWIDTH"), (["--frame", "0x10"], "--frame must be HEIGHTxWIDTH"),
     (["--repeats", "0"], "--repeats must be >= 1")],
)
def test_bad_arguments_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(CliError, match=message):
        run_bench(*argv)
