"""The native kernels as registered PyTorch operators: ``torch.ops.gdino.ms_deform_attn`` and its backward.

Registered with torch.library (custom_op), each with a fake implementation that computes only the
output's shape, dtype and device, so FakeTensorMode, torch.compile(fullgraph=True) and torch.export
trace through the op without reading data or needing a GPU. Autograd is registered on the forward op
and calls the backward op, so compiled backward graphs hold it too. The CPU and CUDA implementations
call perception.ops._C (native.py); one whose kernels are not built raises with the build command.
Shapes as in :func:`perception.ops.reference.ms_deform_attn_pytorch`.
"""
# No `from __future__ import annotations`: custom_op infers each op's schema from its annotations,
# which older torch releases read only as real types, not strings.
import torch

from perception.ops.checks import check_inputs, check_level_values
from perception.ops.native import load_native_ops

DEVICE_TYPES = ("cpu", "cuda")


def native_kernel(kind: str, device: torch.device):
    """The extension's `kind` kernel ("forward" or "backward") for tensors on `device`."""
    native = load_native_ops()
    native.require(device.type)
    return getattr(native.module, f"{kind}_{device.type}")


def checked_contiguous(tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The inputs made contiguous, after the level checks the kernels' memory safety rests on.

    Reading spatial_shapes on CUDA is a device-to-host copy, which a CUDA graph capture forbids: while
    one captures, the levels are not checked (they were checked by the eager warm-up runs).
    """
    value, spatial_shapes, level_start_index = tensors[:3]
    if not (value.is_cuda and torch.cuda.is_current_stream_capturing()):
        check_level_values(spatial_shapes, level_start_index, value.shape[1])
    return tuple(tensor.contiguous() for tensor in tensors)


@torch.library.custom_op("gdino::ms_deform_attn", mutates_args=(), device_types=DEVICE_TYPES)
def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """returns: (batch, num_queries, num_heads * head_dim); differentiable in value, sampling_locations
    and attention_weights."""
    inputs = checked_contiguous((value, spatial_shapes, level_start_index, sampling_locations, attention_weights))
    return native_kernel("forward", value.device)(*inputs)


@ms_deform_attn.register_fake
def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights) -> torch.Tensor:
    check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    batch, _, num_heads, head_dim = value.shape
    return value.new_empty((batch, sampling_locations.shape[1], num_heads * head_dim))


@torch.library.custom_op("gdino::ms_deform_attn_backward", mutates_args=(), device_types=DEVICE_TYPES)
def ms_deform_attn_backward(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    grad_output: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad_output: (batch, num_queries, num_heads * head_dim).
    returns: gradients of value, sampling_locations and attention_weights, shaped like them."""
    inputs = checked_contiguous(
        (value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output)
    )
    grad_value, grad_locations, grad_weights = native_kernel("backward", value.device)(*inputs)
    return grad_value, grad_locations, grad_weights


@ms_deform_attn_backward.register_fake
def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output):
    check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    return (
        value.new_empty(value.shape),
        sampling_locations.new_empty(sampling_locations.shape),
        attention_weights.new_empty(attention_weights.shape),
    )


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output: torch.Tensor):
    grad_value, grad_locations, grad_weights = ms_deform_attn_backward(*ctx.saved_tensors, grad_output)
    return grad_value, None, None, grad_locations, grad_weights


ms_deform_attn.register_autograd(_backward, setup_context=_setup_context)
