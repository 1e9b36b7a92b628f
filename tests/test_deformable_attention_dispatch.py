"""Choosing the deformable-attention implementation: each forced choice, auto, the log line, the errors."""
from __future__ import annotations

import logging
import types

import pytest
import torch

from perception.ops import describe_implementation, dispatch, multi_scale_deformable_attention
from perception.ops.native import EXTENSION_NAME, NativeOps, load_native_ops, release
from perception.ops.reference import ms_deform_attn_pytorch
from perception.ops.synthetic import random_inputs

BUILD_COMMANDS = ("pip install --no-build-isolation -e .", "python setup.py build_ext --inplace")
NOT_IMPORTABLE = NativeOps(None, f"{EXTENSION_NAME} is not importable (No module named 'perception.ops._C')")
# The state of an extension compiled without CUDA sources (this stands in for the module itself).
CPU_ONLY = NativeOps(types.SimpleNamespace(with_cuda=False), f"{EXTENSION_NAME} is built with CPU kernels only")


@pytest.fixture
def inputs():
    return random_inputs([(4, 5), (2, 3)], batch=2, num_heads=2, head_dim=3, num_queries=4, num_points=2)


@pytest.fixture
def fresh_log():
    """Forget which choices were logged, so this test sees the first call's log line."""
    dispatch._logged_choices.clear()
    yield
    dispatch._logged_choices.clear()


def test_the_built_extension_loads() -> None:
    native = load_native_ops()
    assert native.module is not None, native.status
    assert native.module.torch_version == release(torch.__version__)
    assert native.unavailable_reason("cpu") is None


def test_forced_pytorch_is_the_reference(inputs) -> None:
    output = multi_scale_deformable_attention(*inputs.as_args(), implementation="pytorch")
    assert torch.equal(output, ms_deform_attn_pytorch(*inputs.as_args()))


def test_forced_cpu_runs_the_cpu_kernel(inputs) -> None:
    output = multi_scale_deformable_attention(*inputs.as_args(), implementation="cpu")
    assert torch.equal(output, load_native_ops().module.forward_cpu(*inputs.as_args()))


def test_auto_picks_the_cpu_kernel_for_cpu_tensors_and_logs_once(inputs, fresh_log, caplog) -> None:
    assert dispatch.select_implementation("auto", torch.device("cpu")).implementation == "cpu"
    with caplog.at_level(logging.INFO, logger="perception.ops.dispatch"):
        multi_scale_deformable_attention(*inputs.as_args())
        multi_scale_deformable_attention(*inputs.as_args())
    assert [record.getMessage() for record in caplog.records] == [
        f"multi-scale deformable attention (implementation=auto) on cpu tensors: cpu, cpu tensors and {load_native_ops().status}"
    ]
    assert describe_implementation("cpu") == f"cpu (cpu tensors and {load_native_ops().status})"


def test_auto_falls_back_to_the_reference_and_says_why() -> None:
    choice = dispatch.select_implementation("auto", torch.device("cpu"), NOT_IMPORTABLE)
    assert choice == dispatch.Choice("pytorch", f"no native kernels for cpu tensors: {NOT_IMPORTABLE.status}")
    choice = dispatch.select_implementation("auto", torch.device("cuda"), CPU_ONLY)
    assert choice.implementation == "pytorch" and "built without CUDA kernels" in choice.reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_forced_cuda_runs_the_cuda_kernel(inputs) -> None:
    cuda_args = [tensor.cuda() for tensor in inputs.as_args()]
    output = multi_scale_deformable_attention(*cuda_args, implementation="cuda")
    assert torch.equal(output, load_native_ops().module.forward_cuda(*cuda_args))
    assert dispatch.select_implementation("auto", torch.device("cuda")).implementation == "cuda"


@pytest.mark.parametrize("implementation", ["cpu", "cuda"])
def test_forced_unavailable_choice_says_how_to_build_it(implementation: str) -> None:
    with pytest.raises(RuntimeError) as error:
        dispatch.select_implementation(implementation, torch.device(implementation), NOT_IMPORTABLE)
    message = str(error.value)
    assert message.startswith(f"implementation={implementation!r} is not available: {NOT_IMPORTABLE.status}")
    assert all(command in message for command in BUILD_COMMANDS)


def test_forced_cuda_without_cuda_kernels_says_how_to_build_them() -> None:
    with pytest.raises(RuntimeError, match="built without CUDA kernels") as error:
        dispatch.select_implementation("cuda", torch.device("cuda"), CPU_ONLY)
    assert "nvcc, CUDA_HOME and a CUDA build of torch" in str(error.value)


def test_forced_choice_on_the_wrong_device_is_an_error(inputs) -> None:
    with pytest.raises(ValueError, match="implementation='cuda' needs cuda tensors, got tensors on cpu"):
        multi_scale_deformable_attention(*inputs.as_args(), implementation="cuda")


def test_unknown_implementation_lists_the_choices(inputs) -> None:
    with pytest.raises(ValueError, match="must be one of auto, cuda, cpu, pytorch, got 'triton'"):
        multi_scale_deformable_attention(*inputs.as_args(), implementation="triton")


def test_release_drops_the_local_version() -> None:
    assert release("2.14.1+cu130") == "2.14.1"
    assert release("2.15.0a0+git1234") == "2.15.0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(level_start_index=torch.tensor([0, 19])), r"level_start_index must be \[0, 20\]"),
        (lambda a: a.update(spatial_shapes=torch.tensor([[4, 5], [2, 2]])), "hold 24 positions but value has num_values=26"),
        (lambda a: a.update(spatial_shapes=torch.tensor([[4, 5], [2, 3]], dtype=torch.int32)), "must be int64"),
        (lambda a: a.update(attention_weights=a["attention_weights"].float()), "share one floating dtype"),
        (lambda a: a.update(attention_weights=a["attention_weights"][..., :1]), "attention_weights must have shape"),
        (lambda a: a.update(value=a["value"][0]), r"value must be \(batch, num_values, num_heads, head_dim\)"),
        (lambda a: a.update(sampling_locations=a["sampling_locations"][:, :, :1]), "must have batch 2 and 2 heads"),
    ],
    ids=["level-start", "total-size", "int32-shapes", "dtype", "weights-shape", "value-rank", "heads"],
)
def test_bad_inputs_get_a_clear_error(inputs, change, message) -> None:
    arguments = dict(zip(
        ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"), inputs.as_args()
    ))
    change(arguments)
    for implementation in ("pytorch", "cpu"):
        with pytest.raises(ValueError, match=message):
            multi_scale_deformable_attention(**arguments, implementation=implementation)
