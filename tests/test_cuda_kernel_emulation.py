"""The CUDA kernels' own source run on the CPU, against the CPU kernels (issue 13).

tests/cuda_emulation compiles perception/ops/csrc/ms_deform_attn_cuda_kernels.cuh, the very text nvcc
compiles, for the host: an emulation header supplies CUDA's qualifiers, built-in index variables and
atomicAdd, and a launch that runs every thread of every block. Grids are capped at 1 to 3 blocks of a
few threads, so the kernels' grid-stride loops run many rounds, and once as ms_deform_attn_cuda.cu
launches them. Every buffer the kernels touch is surrounded by guard bands, so a read past an end
turns results into NaN and a write past an end raises.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from perception.ops.native import load_native_ops
from perception.ops.synthetic import AttentionInputs, random_inputs
from tolerances import assert_within_ulps

REPOSITORY = Path(__file__).resolve().parents[1]
KERNEL_SOURCES = REPOSITORY / "perception" / "ops" / "csrc"
EMULATION_SOURCES = REPOSITORY / "tests" / "cuda_emulation"

# (id, level shapes, batch, num_heads, head_dim, num_queries, num_points, location range): odd channel
# counts, one and four levels, one-pixel-thin maps; the default range puts ~30% of the samples across a
# border, the last case puts most of them far outside the map.
CASES = [
    ("one-level-5ch", [(4, 6)], 2, 2, 5, 7, 3, (-0.25, 1.25)),
    ("four-levels-3ch", [(6, 8), (3, 4), (2, 2), (1, 1)], 1, 3, 3, 5, 4, (-0.25, 1.25)),
    ("thin-maps-1ch", [(1, 9), (9, 1), (5, 7)], 2, 1, 1, 6, 2, (-0.25, 1.25)),
    ("far-outside-33ch", [(3, 5), (2, 2)], 1, 2, 33, 9, 3, (-2.0, 3.0)),
]
# (max_blocks, threads_per_block): one thread doing everything, 2 blocks of 7 and 3 of 32 threads, and the
# launch of ms_deform_attn_cuda.cu (256 threads, up to 65535 blocks: one round for these sizes).
GRIDS = [(1, 1), (2, 7), (3, 32), (65535, 256)]
GRID_IDS = [f"{blocks}x{threads}" for blocks, threads in GRIDS]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
DTYPE_IDS = [str(dtype).removeprefix("torch.") for dtype in DTYPES]

# The output, location and weight gradients come from the same inline functions of ms_deform_attn_math.h
# called in the same order on both sides, and both are compiled without FMA contraction: they must be
# equal to the bit in every dtype (a difference means the CPU and CUDA kernels no longer compute alike).
# The value gradient is scattered with atomicAdd in thread order instead of in sample order, so its float
# sums are reordered: up to 3.5 ulps of its largest magnitude seen in float32 and float64, bounded at 16;
# a 16-bit result is the rounding of such a sum and may land on the neighbouring value: 1 ulp of its type.
REORDERED_SUM_ULPS = 16
HALF_ROUNDING_ULPS = 1
# No FMA contraction, as setup.py compiles the CPU kernels, so that both round alike; little optimization and
# no debug information keep the compile short (the harness runs small grids).
COMPILE_FLAGS = ["-O1", "-g0", "-ffp-contract=off"]


@pytest.fixture(scope="session")
def emulated_kernels(tmp_path_factory):
    """The harness module (forward, backward), compiled once per test session into pytest's temporary directory."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        pytest.fail(f"no C++ compiler `{compiler}` on PATH: the emulated CUDA kernels cannot be built (install g++ or set CXX)")
    from torch.utils.cpp_extension import load

    return load(
        name="gdino_cuda_emulation",
        sources=[str(EMULATION_SOURCES / "ms_deform_attn_emulated.cpp"), str(KERNEL_SOURCES / "ms_deform_attn_checks.cpp")],
        extra_include_paths=[str(KERNEL_SOURCES), str(EMULATION_SOURCES)],
        extra_cflags=COMPILE_FLAGS,
        build_directory=str(tmp_path_factory.mktemp("cuda_emulation")),
    )


@pytest.fixture(scope="session")
def cpu_kernels():
    """The extension perception.ops._C, whose forward_cpu and backward_cpu are the reference here."""
    native = load_native_ops()
    assert native.module is not None, native.status
    return native.module


def case_inputs(case, dtype: torch.dtype) -> tuple[AttentionInputs, torch.Tensor]:
    """The case's inputs and a fixed upstream gradient (batch, num_queries, num_heads * head_dim)."""
    _, level_shapes, batch, num_heads, head_dim, num_queries, num_points, location_range = case
    inputs = random_inputs(
        level_shapes, batch=batch, num_heads=num_heads, head_dim=head_dim, num_queries=num_queries,
        num_points=num_points, location_range=location_range, dtype=dtype,
    )
    grad_output = torch.linspace(-1, 1, batch * num_queries * num_heads * head_dim, dtype=torch.float64)
    return inputs, grad_output.view(batch, num_queries, num_heads * head_dim).to(dtype)


def assert_bit_equal(emulated: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    assert emulated.shape == expected.shape, (name, emulated.shape, expected.shape)
    differing = emulated != expected  # NaN (a read past a buffer's end) differs from everything
    assert not differing.any(), (
        f"{name}: {int(differing.sum())} of {expected.numel()} elements differ, largest by "
        f"{float((emulated.double() - expected.double()).abs().max()):.3g}"
    )


@pytest.mark.parametrize("grid", GRIDS, ids=GRID_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_emulated_cuda_kernels_match_the_cpu_kernels(emulated_kernels, cpu_kernels, case, dtype, grid) -> None:
    inputs, grad_output = case_inputs(case, dtype)
    max_blocks, threads_per_block = grid

    output = emulated_kernels.forward(*inputs.as_args(), max_blocks, threads_per_block)
    assert_bit_equal(output, cpu_kernels.forward_cpu(*inputs.as_args()), "output")

    grad_value, grad_locations, grad_weights = emulated_kernels.backward(
        *inputs.as_args(), grad_output, max_blocks, threads_per_block
    )
    expected_value, expected_locations, expected_weights = cpu_kernels.backward_cpu(*inputs.as_args(), grad_output)
    assert_bit_equal(grad_locations, expected_locations, "grad_sampling_locations")
    assert_bit_equal(grad_weights, expected_weights, "grad_attention_weights")
    if dtype in (torch.float16, torch.bfloat16):
        assert_within_ulps(grad_value, expected_value, HALF_ROUNDING_ULPS)
    else:
        assert_within_ulps(grad_value, expected_value, REORDERED_SUM_ULPS)
