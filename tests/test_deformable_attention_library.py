"""The native op as a registered PyTorch operator (perception/ops/library.py): torch.library.opcheck,
torch.compile(fullgraph=True), torch.export and fake CUDA tensors see through it."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from perception.ops import multi_scale_deformable_attention
from perception.ops.library import ms_deform_attn, ms_deform_attn_backward
from perception.ops.native import BUILD_HINT, EXTENSION_NAME, NativeOps, load_native_ops
from perception.ops.synthetic import AttentionInputs, random_inputs
from test_deformable_attention import HALF_ULPS, KERNEL_ULPS, outputs_and_gradients
from tolerances import assert_within_ulps

DTYPES = [torch.float64, torch.float32, torch.bfloat16]
DTYPE_IDS = ["float64", "float32", "bfloat16"]
# (id, level shapes, settings): odd channel counts, one and several levels (a one-pixel-thin one), and
# sampling locations partly (the default range puts ~30% across a border) or wholly outside the map.
CASES = [
    ("one-level-3ch", [(3, 4)], dict(batch=1, num_heads=1, head_dim=3, num_queries=2, num_points=2)),
    ("three-levels-5ch", [(5, 7), (1, 9), (2, 2)], dict(batch=2, num_heads=2, head_dim=5, num_queries=3, num_points=2)),
    ("all-outside-7ch", [(4, 3), (2, 2)], dict(batch=1, num_heads=3, head_dim=7, num_queries=2, num_points=3,
                                               location_range=(1.5, 3.0))),
]
CASE_IDS = [case[0] for case in CASES]


def case_inputs(case, dtype: torch.dtype) -> AttentionInputs:
    _, level_shapes, settings = case
    return random_inputs(level_shapes, dtype=dtype, **settings)


def differentiable(inputs: AttentionInputs) -> tuple[torch.Tensor, ...]:
    """The op's arguments, with copies of value, sampling_locations and attention_weights that require grad."""
    value, spatial_shapes, level_start_index, locations, weights = (
        t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs.as_args()
    )
    return value, spatial_shapes, level_start_index, locations, weights


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_opcheck_forward_and_backward(case, dtype: torch.dtype) -> None:
    """Schema, fake implementation against the CPU kernel, autograd registration, and forward and
    backward through AOT autograd with dynamic shapes; then the backward op on its own."""
    inputs = case_inputs(case, dtype)
    torch.library.opcheck(ms_deform_attn, differentiable(inputs))
    grad_output = torch.linspace(-1, 1, ms_deform_attn(*inputs.as_args()).numel(), dtype=dtype)
    grad_output = grad_output.view(inputs.value.shape[0], -1, inputs.value.shape[2] * inputs.value.shape[3])
    torch.library.opcheck(ms_deform_attn_backward, (*inputs.as_args(), grad_output))


@pytest.mark.numeric
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_registered_op_matches_reference(case, dtype: torch.dtype) -> None:
    """opcheck compares the op with itself; this compares it (forward and gradients, through the
    public function, which runs the op) with the pure-PyTorch reference in float64."""
    inputs = case_inputs(case, dtype)
    ours = outputs_and_gradients(inputs, "cpu")
    exact = outputs_and_gradients(
        AttentionInputs(*(t.double() if t.is_floating_point() else t for t in inputs.as_args())), None
    )
    for actual, expected in zip(ours, exact):
        assert actual.dtype == dtype
        if dtype == torch.bfloat16:
            assert_within_ulps(actual, expected, HALF_ULPS, dtype=dtype)
        else:
            assert_within_ulps(actual, expected, KERNEL_ULPS, dtype=dtype)


class ProjectedAttention(nn.Module):
    """A small layer around the public function: projections before and after, as in the model."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.value_proj = nn.Linear(dim, dim)
        self.weight_proj = nn.Linear(dim, num_heads * num_levels * num_points)
        self.output_proj = nn.Linear(dim, dim)

    def forward(self, queries, values, spatial_shapes, level_start_index, sampling_locations):
        batch, num_queries, _ = queries.shape
        value = self.value_proj(values).view(batch, values.shape[1], self.num_heads, -1)
        weights = self.weight_proj(queries).view(batch, num_queries, self.num_heads, -1).softmax(-1)
        weights = weights.view(sampling_locations.shape[:5])
        sampled = multi_scale_deformable_attention(value, spatial_shapes, level_start_index, sampling_locations, weights)
        return self.output_proj(sampled)


def layer_and_inputs() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    inputs = random_inputs([(5, 7), (3, 4)], batch=2, num_heads=2, head_dim=5, num_queries=6, num_points=3,
                           dtype=torch.float32)
    layer = ProjectedAttention(dim=10, num_heads=2, num_levels=2, num_points=3).eval()
    queries = torch.randn(2, 6, 10)
    values = inputs.value.flatten(2)
    return layer, (queries, values, inputs.spatial_shapes, inputs.level_start_index, inputs.sampling_locations)


@pytest.mark.numeric
def test_compiled_layer_matches_eager() -> None:
    layer, args = layer_and_inputs()
    with torch.no_grad():
        eager = layer(*args)
        compiled = torch.compile(layer, fullgraph=True)(*args)
    # Inductor fuses the projections and the softmax in its own order: a few float32 roundings.
    assert_within_ulps(compiled, eager, 16)


def test_compiled_backward_runs_the_backward_kernel() -> None:
    args = differentiable(case_inputs(CASES[1], torch.float64))
    gradients_of = args[0], args[3], args[4]

    def loss(*args):
        return ms_deform_attn(*args).square().sum()

    eager = torch.autograd.grad(loss(*args), gradients_of)
    compiled = torch.autograd.grad(torch.compile(loss, fullgraph=True)(*args), gradients_of)
    # The same kernels on the same numbers; only the square and sum around them are compiled.
    assert all(torch.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(compiled, eager))


@pytest.mark.numeric
def test_export_holds_the_op() -> None:
    layer, args = layer_and_inputs()
    program = torch.export.export(layer, args)
    targets = [node.target for node in program.graph.nodes if node.op == "call_function"]
    assert torch.ops.gdino.ms_deform_attn.default in targets
    with torch.no_grad():
        # The same kernels unless export decomposes the softmax or the projections: a few roundings.
        assert_within_ulps(program.module()(*args), layer(*args), 16)


@pytest.mark.skipif(
    load_native_ops().unavailable_reason("cuda") is not None,
    reason=f"the extension has no CUDA kernels, so auto takes the reference on cuda: {load_native_ops().status}",
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["float32", "float16", "bfloat16"])
def test_fake_cuda_tensors_go_through_the_op_without_data(dtype: torch.dtype) -> None:
    """No GPU needed: the fake implementations give shapes, and any read of data (the reference's
    .tolist(), a kernel) would raise under FakeTensorMode. The backward op is called directly: the
    autograd engine itself needs a real CUDA device."""
    real = case_inputs(CASES[1], torch.float64)
    with FakeTensorMode():
        args = [
            torch.empty(t.shape, dtype=dtype if t.is_floating_point() else t.dtype, device="cuda")
            for t in real.as_args()
        ]
        output = multi_scale_deformable_attention(*args)
        gradients = ms_deform_attn_backward(*args, torch.empty_like(output))
    assert output.shape == (2, 3, 2 * 5) and output.dtype == dtype and output.device == torch.device("cuda", 0)
    for gradient, tensor in zip(gradients, (args[0], args[3], args[4])):
        assert gradient.shape == tensor.shape and gradient.dtype == dtype and gradient.device == tensor.device


def test_missing_kernels_say_how_to_build_them() -> None:
    missing = NativeOps(None, f"{EXTENSION_NAME} is not importable (No module named 'perception.ops._C')")
    with pytest.raises(RuntimeError) as error:
        missing.require("cuda")
    assert str(error.value) == f"the native cuda kernels are not available: {missing.status}; {BUILD_HINT}"


def test_level_tensors_the_model_built_are_not_read_again() -> None:
    # On CUDA, reading spatial_shapes is a device-to-host copy that waits for the GPU, in every attention layer.
    # Tensors on the meta device have no data: reading them raises, so passing means nothing was read.
    from perception.ops.checks import check_level_values, record_checked_levels

    shapes = [(4, 6), (2, 3)]
    spatial_shapes = torch.tensor(shapes, device="meta")
    level_start_index = torch.tensor([0, 24], device="meta")
    with pytest.raises(Exception):
        check_level_values(spatial_shapes, level_start_index, 30)  # not recorded: would read
    record_checked_levels(spatial_shapes, level_start_index, shapes)
    check_level_values(spatial_shapes, level_start_index, 30)
    with pytest.raises(ValueError, match="30 positions"):
        check_level_values(spatial_shapes, level_start_index, 31)
    with pytest.raises(Exception):  # another start index tensor is read
        check_level_values(spatial_shapes, torch.tensor([0, 24], device="meta"), 30)
    spatial_shapes.add_(0)  # changed in place: read again
    with pytest.raises(Exception):
        check_level_values(spatial_shapes, level_start_index, 30)
    with pytest.raises(ValueError, match="height and width"):
        record_checked_levels(torch.zeros(1, 2), torch.zeros(1), [(0, 3)])


def test_the_backbone_records_its_level_tensors() -> None:
    from perception.model.grounding_dino import GroundingDino
    from perception.ops.checks import _recorded
    from perception.training.bundled import bundled_model_config

    model = GroundingDino(bundled_model_config()).eval()
    with torch.no_grad():
        features = model.encode_image(torch.rand(1, 3, 64, 96), torch.zeros(1, 64, 96, dtype=torch.bool))
    total = sum(h * w for h, w in features.spatial_shapes_list)
    assert _recorded(features.spatial_shapes, features.level_start_index, total)
