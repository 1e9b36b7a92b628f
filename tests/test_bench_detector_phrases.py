"""`gdino bench detector --phrases N`: prompts of N distinct phrases, timed whole and by their first chunk alone,
beside transformers in float32 on the same weights and frames."""
from __future__ import annotations

import json

import pytest

from perception.bench.long_prompts import MAX_PHRASES, distinct_phrases
from perception.cli.main import main


def test_phrases_are_distinct_and_reach_lvis_size():
    phrases = distinct_phrases(MAX_PHRASES)
    assert len(set(phrases)) == MAX_PHRASES >= 1203
    assert distinct_phrases(3) == phrases[:3]
    with pytest.raises(ValueError, match="1..1240"):
        distinct_phrases(0)


def test_bench_detector_phrases_reports_chunks_and_their_cost(capsys):
    assert main(["bench", "detector", "--model", "tiny", "--sizes", "64x96", "--repeats", "1", "--dtype", "bfloat16",
                 "--phrases", "10,150", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dtype"] == "bfloat16" and result["reference_dtype"] == "float32"
    short, long = result["phrases"]["10"]["64x96"], result["phrases"]["150"]["64x96"]
    assert short["chunks"] == 1 and long["chunks"] == 3
    for entry in (short, long):
        assert entry["chunk_cost_ratio"] == pytest.approx(entry["ours"]["p50_ms"] / entry["first_chunk"]["p50_ms"],
                                                          rel=0.01)
        assert entry["ratio"] == pytest.approx(entry["ours"]["p50_ms"] / entry["reference"]["p50_ms"], rel=0.01)
    # The headline is the first count's: 10 phrases, one chunk.
    assert result["chunks"] == 1 and result["chunk_cost_ratio"] == short["chunk_cost_ratio"]


def test_bench_detector_phrases_out_of_range_is_a_usage_error(capsys):
    assert main(["bench", "detector", "--model", "tiny", "--phrases", "5000"]) == 2
    assert "--phrases must be between 1 and 1240" in capsys.readouterr().err
