"""The autograd Function around the native kernels (forward and backward from perception.ops._C)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable


class MultiScaleDeformableAttentionFunction(torch.autograd.Function):
    """Differentiable in value, sampling_locations and attention_weights; shapes as in the reference.

    forward_kernel(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    -> output and backward_kernel(same inputs, grad_output) -> [grad_value, grad_sampling_locations,
    grad_attention_weights] are one device's pair from the extension.
    """

    @staticmethod
    def forward(
        ctx,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor,
        forward_kernel: Callable[..., torch.Tensor],
        backward_kernel: Callable[..., list[torch.Tensor]],
    ) -> torch.Tensor:
        inputs = tuple(
            tensor.contiguous()
            for tensor in (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        )
        ctx.save_for_backward(*inputs)
        ctx.backward_kernel = backward_kernel
        return forward_kernel(*inputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        grad_value, grad_locations, grad_weights = ctx.backward_kernel(*ctx.saved_tensors, grad_output.contiguous())
        return grad_value, None, None, grad_locations, grad_weights, None, None
