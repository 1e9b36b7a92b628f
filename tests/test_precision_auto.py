"""dtype "auto" (perception.precision): float16 on a CUDA GPU, bfloat16 on a CPU with bfloat16 instructions that
passes the check against float32, float32 otherwise, with the reason logged once."""
from __future__ import annotations

import logging

import pytest
import torch

from perception import precision
from perception.precision import CheckResult, check_verdict, choose_dtype, cpu_bfloat16_flags, resolve_dtype

CPU = torch.device("cpu")
AMD_FLAGS = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512vl\n"
INTEL_FLAGS = "flags\t\t: fpu avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n"
ARM_FEATURES = "processor\t: 0\nFeatures\t: fp asimd sve bf16 svebf16 i8mm\n"
OLD_X86 = "flags\t\t: fpu sse sse2 avx avx2 fma\n"


@pytest.fixture(autouse=True)
def no_forced_choice(monkeypatch):
    monkeypatch.delenv("GDINO_AUTO_DTYPE", raising=False)  # conftest sets it for the rest of the suite
    monkeypatch.setattr(precision, "_logged", set())


def test_bfloat16_instructions_are_read_from_cpuinfo():
    assert cpu_bfloat16_flags(AMD_FLAGS) == ["avx512_bf16"]
    assert cpu_bfloat16_flags(INTEL_FLAGS) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bfloat16_flags(ARM_FEATURES) == ["bf16", "svebf16"]
    assert cpu_bfloat16_flags(OLD_X86) == [] and cpu_bfloat16_flags("") == []


def _never_called():
    raise AssertionError("the bfloat16 check ran where the answer did not depend on it")


def test_a_cpu_without_bfloat16_instructions_gets_float32():
    choice = choose_dtype("auto", CPU, cpu_bfloat16_flags(OLD_X86), _never_called)
    assert choice.dtype == "float32" and "no bfloat16 instructions" in choice.reason


def test_a_cpu_whose_check_fails_gets_float32_and_says_why():
    failed = CheckResult(False, "largest score difference 0.156 (at most 0.05)")
    choice = choose_dtype("auto", CPU, ["avx512_bf16"], lambda: failed)
    assert choice.dtype == "float32"
    assert choice.reason == ("this CPU has avx512_bf16; bfloat16 failed the check: largest score difference 0.156 "
                             "(at most 0.05)")


def test_the_check_says_whether_bfloat16_was_wrong_or_only_slower():
    agreeing = {"agreement_with_float32": 1.0, "max_score_difference_with_float32": 0.003, "float32_detections": 10}
    passed = check_verdict(agreeing, {"other": 0.4, "float32": 0.6})
    assert passed.passed and passed.detail.startswith("10 float32 detections, 100% matched")
    # On a busy CPU bfloat16 can be slower though just as accurate: the log has to say that, and how to pin the
    # choice, or two runs of one command give different figures with no visible reason.
    slower = check_verdict(agreeing, {"other": 0.7, "float32": 0.6})
    assert not slower.passed
    assert slower.detail.startswith("as accurate but slower: 10 float32 detections, 100% matched")
    assert "700 ms against float32's 600 ms" in slower.detail and "GDINO_AUTO_DTYPE" in slower.detail
    differing = check_verdict({**agreeing, "agreement_with_float32": 0.9}, {"other": 0.4, "float32": 0.6})
    assert not differing.passed and differing.detail.startswith("its detections differ from float32's: ")
    off = check_verdict({**agreeing, "max_score_difference_with_float32": 0.08}, {"other": 0.4, "float32": 0.6})
    assert not off.passed and "largest score difference 0.08 (at most 0.05)" in off.detail
    nothing = {"agreement_with_float32": None, "max_score_difference_with_float32": 0.0, "float32_detections": 0}
    assert check_verdict(nothing, {"other": 0.4, "float32": 0.6}).passed


def test_a_cpu_whose_check_passes_gets_bfloat16():
    choice = choose_dtype("auto", CPU, ["amx_bf16"], lambda: CheckResult(True, "all matched"))
    assert choice.dtype == "bfloat16" and "passed" in choice.reason


def test_a_cuda_gpu_gets_float16_and_a_requested_dtype_is_kept():
    assert choose_dtype("auto", torch.device("cuda:0"), [], _never_called).dtype == "float16"
    assert choose_dtype("bfloat16", CPU, [], _never_called) == precision.PrecisionChoice("bfloat16", "requested")
    with pytest.raises(ValueError, match="dtype must be one of"):
        choose_dtype("half", CPU, [], _never_called)


def test_the_environment_fixes_auto(monkeypatch):
    monkeypatch.setenv("GDINO_AUTO_DTYPE", "bfloat16")
    assert choose_dtype("auto", CPU, [], _never_called).reason == "GDINO_AUTO_DTYPE=bfloat16"
    monkeypatch.setenv("GDINO_AUTO_DTYPE", "fp8")
    with pytest.raises(ValueError, match="GDINO_AUTO_DTYPE must be one of"):
        choose_dtype("auto", CPU, [], _never_called)


def test_the_choice_is_logged_once(monkeypatch, caplog):
    monkeypatch.setenv("GDINO_AUTO_DTYPE", "float32")
    with caplog.at_level(logging.INFO, logger="perception.precision"):
        assert resolve_dtype("auto", "cpu") == resolve_dtype("auto", "cpu") == "float32"
        assert resolve_dtype("float16", "cpu") == "float16"
    assert [record.getMessage() for record in caplog.records] == [
        "precision (dtype=auto) on cpu: float32, GDINO_AUTO_DTYPE=float32"]


def test_from_pretrained_resolves_auto_and_the_constructor_refuses_it(monkeypatch):
    from perception.detector import GroundingDinoDetector

    monkeypatch.setenv("GDINO_AUTO_DTYPE", "bfloat16")
    detector = GroundingDinoDetector.from_pretrained("random:tiny")  # auto is the default
    assert detector.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="resolve 'auto'"):
        GroundingDinoDetector(detector.model, detector.tokenizer, dtype="auto")


def test_the_check_compares_on_scenes_and_float32_agrees_with_itself():
    from perception.detector import GroundingDinoDetector
    from perception.eval.agreement import ComparedDetector

    float32 = GroundingDinoDetector.from_pretrained(None, dtype="float32")
    compared = ComparedDetector(float32, float32, counted_from=float32.box_threshold)
    precision._compare_on_scenes(compared)
    agreement = compared.agreement.as_dict()
    assert agreement["agreement_with_float32"] == 1.0 and agreement["max_score_difference_with_float32"] == 0.0
    assert agreement["float32_detections"] >= len(precision.CHECK_SEEDS)  # each scene's objects are found
    assert compared.seconds["float32"] > 0 and compared.seconds["other"] > 0
