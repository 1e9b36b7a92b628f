"""``dtype="auto"``: the precision the detector runs in unless one is asked for.

- a CUDA GPU: float16;
- a CPU with bfloat16 instructions (x86 AMX or AVX512-BF16, Arm BF16) that passes the check below: bfloat16;
- otherwise float32.

The check (once per process, on the first CPU detector asking for auto): the bundled model detects CHECK_SEEDS'
generated scenes in float32 and in bfloat16, interleaved, in this process. bfloat16 passes when every float32
detection above the default box threshold has a bfloat16 detection of its phrase at IoU >= 0.9 within
MAX_SCORE_DIFFERENCE of its score, and when bfloat16 took less time than float32. It is a check of this CPU's
kernels and of the model's numerics in bfloat16, not of the weights the caller loads: ``gdino eval detection
--dtype bfloat16`` measures those. The choice and its reason are logged once per device type.
GDINO_AUTO_DTYPE=float32|float16|bfloat16 makes auto choose that dtype (a machine's operator, or a test suite
that must give the same numbers on every CPU).
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

AUTO = "auto"
CONCRETE_DTYPES = ("float32", "float16", "bfloat16")
# /proc/cpuinfo names: x86 "flags" (AMX tiles in bfloat16, AVX-512 bfloat16 dot products), Arm "Features".
BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16", "svebf16")
CHECK_SEEDS = (1000, 1001, 1002)  # generate_scene seeds: held out from training (seeds >= 1,000,000)
CHECK_SIZE = (256, 256)
CANDIDATE_THRESHOLD = 0.1  # bfloat16 detections down to this score may match a float32 one above the default
MAX_SCORE_DIFFERENCE = 0.05  # the most bfloat16 may move a score: users' thresholds were set on float32's


@dataclass(frozen=True)
class PrecisionChoice:
    dtype: str  # float32, float16 or bfloat16
    reason: str


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str  # what was measured, for the log line


def cpu_bfloat16_flags(cpuinfo: str | None = None) -> list[str]:
    """The BFLOAT16_FLAGS this CPU has, from ``cpuinfo`` (the text of /proc/cpuinfo, read when None; a system
    without it has none)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            present = set(value.split())
            return [flag for flag in BFLOAT16_FLAGS if flag in present]
    return []


def choose_dtype(requested: str, device: torch.device, flags: list[str], check) -> PrecisionChoice:
    """What ``requested`` means on ``device``. flags: cpu_bfloat16_flags(); check: a callable giving the
    CheckResult of bfloat16 on this CPU, called only when it decides."""
    if requested != AUTO:
        if requested not in CONCRETE_DTYPES:
            raise ValueError(f"dtype must be one of {(AUTO, *CONCRETE_DTYPES)}, got {requested!r}")
        return PrecisionChoice(requested, "requested")
    forced = os.environ.get("GDINO_AUTO_DTYPE")
    if forced:
        if forced not in CONCRETE_DTYPES:
            raise ValueError(f"GDINO_AUTO_DTYPE must be one of {CONCRETE_DTYPES}, got {forced!r}")
        return PrecisionChoice(forced, f"GDINO_AUTO_DTYPE={forced}")
    if device.type == "cuda":
        return PrecisionChoice("float16", "a CUDA GPU")
    if device.type != "cpu":
        return PrecisionChoice("float32", f"no half precision chosen for {device.type} devices")
    if not flags:
        return PrecisionChoice("float32", "this CPU has no bfloat16 instructions (AMX, AVX512-BF16 or Arm BF16)")
    result = check()
    verdict = "passed" if result.passed else "failed"
    return PrecisionChoice("bfloat16" if result.passed else "float32",
                           f"this CPU has {', '.join(flags)}; bfloat16 {verdict} the check: {result.detail}")


def _compare_on_scenes(compared) -> None:
    """The check scenes through a ComparedDetector (bfloat16 beside float32), each scene with its own phrases."""
    from perception.training.synthetic import generate_scene

    for index, seed in enumerate(CHECK_SEEDS):
        scene = generate_scene(seed, CHECK_SIZE)
        compared.set_prompt(" . ".join(sorted(set(scene.labels))) + " .")
        if index == 0:  # first calls allocate and choose kernels: untimed, uncounted
            compared.detector.detect([scene.image])
            compared.float32_detector.detect([scene.image])
        compared.detect([scene.image], box_threshold=CANDIDATE_THRESHOLD)


@functools.cache
def check_bfloat16_on_cpu() -> CheckResult:
    """The bundled model in float32 and bfloat16 on the check scenes (see the module docstring)."""
    from perception.detector import GroundingDinoDetector
    from perception.eval.agreement import ComparedDetector

    bfloat16, float32 = (GroundingDinoDetector.from_pretrained(None, dtype=dtype) for dtype in ("bfloat16", "float32"))
    compared = ComparedDetector(bfloat16, float32, counted_from=float32.box_threshold)
    _compare_on_scenes(compared)
    return check_verdict(compared.agreement.as_dict(), compared.seconds)


def check_verdict(agreement: dict, seconds: dict) -> CheckResult:
    """The check's result from ComparedDetector's agreement (as_dict) and seconds (bfloat16's under "other"), its
    detail naming what failed. The timing is part of the check, so a CPU busy with other work can turn bfloat16
    down where an idle one would not: that detail says how to fix the choice."""
    share, difference = agreement["agreement_with_float32"], agreement["max_score_difference_with_float32"]
    matched = "none to match" if share is None else f"{share:.0%} matched"
    measured = (f"{agreement['float32_detections']} float32 detections, {matched}, largest score difference "
                f"{difference} (at most {MAX_SCORE_DIFFERENCE}), {seconds['other'] * 1000:.0f} ms against float32's "
                f"{seconds['float32'] * 1000:.0f} ms")
    accurate = share in (None, 1.0) and difference <= MAX_SCORE_DIFFERENCE
    faster = seconds["other"] < seconds["float32"]
    if not accurate:
        return CheckResult(False, f"its detections differ from float32's: {measured}")
    if not faster:
        return CheckResult(False, f"as accurate but slower: {measured}; the timing changes with the CPU's other work, "
                                  "so --dtype or GDINO_AUTO_DTYPE fixes the choice where runs must agree")
    return CheckResult(True, measured)


_logged: set[tuple[str, str]] = set()


def resolve_dtype(requested: str, device: str | torch.device = "cpu") -> str:
    """The concrete dtype ``requested`` (auto or a dtype name) means on ``device``; auto's choice and its reason
    are logged the first time per device type."""
    device = torch.device(device)
    if requested != AUTO:
        return choose_dtype(requested, device, [], check_bfloat16_on_cpu).dtype
    flags = cpu_bfloat16_flags() if device.type == "cpu" else []
    choice = choose_dtype(AUTO, device, flags, check_bfloat16_on_cpu)
    if (device.type, choice.dtype) not in _logged:
        _logged.add((device.type, choice.dtype))
        logger.info("precision (dtype=auto) on %s: %s, %s", device.type, choice.dtype, choice.reason)
    return choice.dtype
