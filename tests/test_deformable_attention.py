"""The native multi-scale deformable attention kernels against the pure-PyTorch reference.

Every test runs on the CPU kernel and, when a GPU exists, on the CUDA kernel (forced implementations,
so a kernel that is not built fails with its build command instead of silently testing the reference).
"""
from __future__ import annotations

import pytest
import torch

from perception.ops import multi_scale_deformable_attention
from perception.ops.reference import ms_deform_attn_pytorch
from perception.ops.synthetic import AttentionInputs, random_inputs
from tolerances import assert_within_ulps

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
    ),
]

# (id, level shapes, batch, num_heads, head_dim, num_queries, num_points): odd channel counts,
# 1 to 5 levels including 1x1 and one-pixel-thin maps, 1 to 8 points, batch 1 and 3.
CASES = [
    ("1x1-one-channel", [(1, 1)], 1, 1, 1, 3, 1),
    ("thin-maps-3ch", [(5, 7), (1, 9), (9, 1)], 3, 2, 3, 4, 2),
    ("encoder-like-32ch", [(6, 8), (3, 4), (2, 2), (1, 1)], 1, 8, 32, 5, 4),
    ("five-levels-64ch", [(4, 5), (2, 3), (1, 1), (7, 1), (1, 6)], 3, 2, 64, 3, 8),
    ("one-level-71ch", [(3, 3)], 1, 1, 71, 2, 3),
]
CASE_IDS = [case[0] for case in CASES]
pytestmark = pytest.mark.numeric
# Our kernel sums the same bilinear samples as grid_sample in another order: output and gradients within
# 12 ulps of each tensor's largest magnitude seen, float32 and float64 alike (per tensor, so that location
# gradients, scaled by the map size, are held to their own size). A misplaced sample is ~1e-3 or more.
KERNEL_ULPS = 64
# Half precision against float64 on the same rounded inputs, in ulps of the half type: a few roundings to
# 8 (bfloat16) or 11 (float16) significant bits; under one ulp seen.
HALF_ULPS = 4


def case_inputs(case, dtype: torch.dtype, device: str, **overrides) -> AttentionInputs:
    _, level_shapes, batch, num_heads, head_dim, num_queries, num_points = case
    settings = dict(batch=batch, num_heads=num_heads, head_dim=head_dim, num_queries=num_queries, num_points=num_points)
    settings.update(overrides)
    return random_inputs(level_shapes, dtype=dtype, device=device, **settings)


def outputs_and_gradients(inputs: AttentionInputs, implementation: str | None) -> list[torch.Tensor]:
    """[output, grad_value, grad_sampling_locations, grad_attention_weights] for a fixed upstream gradient."""
    value, locations, weights = (
        tensor.detach().clone().requires_grad_()
        for tensor in (inputs.value, inputs.sampling_locations, inputs.attention_weights)
    )
    args = (value, inputs.spatial_shapes, inputs.level_start_index, locations, weights)
    if implementation is None:
        output = ms_deform_attn_pytorch(*args)
    else:
        output = multi_scale_deformable_attention(*args, implementation=implementation)
    grad_output = torch.linspace(-1, 1, output.numel(), dtype=output.dtype, device=output.device).view_as(output)
    output.backward(grad_output)
    return [output.detach(), value.grad, locations.grad, weights.grad]


def assert_matches_reference(native: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    """Output and each gradient within KERNEL_ULPS of that tensor's largest magnitude."""
    for ours, expected in zip(native, reference):
        assert_within_ulps(ours, expected, KERNEL_ULPS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_kernel_matches_reference(case, dtype: torch.dtype, device: str) -> None:
    inputs = case_inputs(case, dtype, device)
    assert_matches_reference(outputs_and_gradients(inputs, device), outputs_and_gradients(inputs, None))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradcheck_float64(case, device: str) -> None:
    inputs = case_inputs(case, torch.float64, device)
    value, locations, weights = (
        tensor.clone().requires_grad_() for tensor in (inputs.value, inputs.sampling_locations, inputs.attention_weights)
    )

    def attention(value, locations, weights):
        return multi_scale_deformable_attention(
            value, inputs.spatial_shapes, inputs.level_start_index, locations, weights, implementation=device
        )

    # Fast mode (random projections) keeps the larger cases quick; the small ones check every entry.
    fast_mode = value.numel() > 500
    # The CUDA backward sums the value gradient of every sample that reads a pixel with atomicAdd, in an order
    # that varies from run to run (as the original op's kernel does): two backward passes agree to rounding
    # (about 1e-16 in float64), not bit for bit; seen on an H200. The CPU backward is deterministic.
    nondet_tol = 1e-12 if device == "cuda" else 0.0
    assert torch.autograd.gradcheck(attention, (value, locations, weights), fast_mode=fast_mode,
                                    nondet_tol=nondet_tol)


@pytest.mark.parametrize("device", DEVICES)
def test_zero_queries(device: str) -> None:
    inputs = case_inputs(CASES[1], torch.float64, device, num_queries=0)
    native = outputs_and_gradients(inputs, device)
    assert native[0].shape == (3, 0, 2 * 3)
    assert native[1].abs().max().item() == 0.0
    assert native[2].shape == inputs.sampling_locations.shape and native[3].shape == inputs.attention_weights.shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_far_outside_and_border_locations(dtype: torch.dtype, device: str) -> None:
    inputs = case_inputs(CASES[2], dtype, device)
    locations = inputs.sampling_locations.clone()
    # Far outside (no corner inside, must read zero without overflow), exactly on the borders of
    # the [0, 1] range, and exactly on pixel centres of the first level (width 8, height 6).
    special = torch.tensor([-1e30, -1e6, -3.0, -1e-7, 0.0, 1.0 / 16, 0.5, 1.0, 1.0 + 1e-7, 7.0, 1e6, 1e30])
    flat = locations.view(-1, 2)
    flat[:, 0] = special.repeat(flat.shape[0] // special.numel() + 1)[: flat.shape[0]].to(dtype)
    flat[:, 1] = special.flip(0).repeat(flat.shape[0] // special.numel() + 1)[: flat.shape[0]].to(dtype)
    inputs = AttentionInputs(
        inputs.value, inputs.spatial_shapes, inputs.level_start_index, locations, inputs.attention_weights
    )
    assert_matches_reference(outputs_and_gradients(inputs, device), outputs_and_gradients(inputs, None))
    everything_outside = case_inputs(CASES[2], dtype, device, location_range=(3.0, 1e6))
    zeros = outputs_and_gradients(everything_outside, device)
    assert all(tensor.abs().max().item() == 0.0 for tensor in zeros)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_accumulates_in_float32(dtype: torch.dtype, device: str) -> None:
    inputs = case_inputs(CASES[3], dtype, device)
    native = outputs_and_gradients(inputs, device)
    exact_inputs = AttentionInputs(*(tensor.double() if tensor.is_floating_point() else tensor for tensor in inputs.as_args()))
    exact = outputs_and_gradients(exact_inputs, None)
    assert all(tensor.dtype == dtype for tensor in native)
    for ours, expected in zip(native, exact):
        assert_within_ulps(ours, expected, HALF_ULPS, dtype=dtype)


def test_cpu_results_do_not_depend_on_thread_count() -> None:
    inputs = case_inputs(CASES[3], torch.float32, "cpu", num_queries=40)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = outputs_and_gradients(inputs, "cpu")
        torch.set_num_threads(max(2, threads))
        parallel = outputs_and_gradients(inputs, "cpu")
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(single, parallel))
