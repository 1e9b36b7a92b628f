"""The one entry point the model calls for multi-scale deformable attention.

Implementations: ``pytorch`` (reference.py, always available). Native kernels register here.
"""
from __future__ import annotations

import logging

import torch

from perception.ops.reference import ms_deform_attn_pytorch

logger = logging.getLogger(__name__)

IMPLEMENTATIONS = ("auto", "cuda", "cpu", "pytorch")


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    implementation: str = "auto",
) -> torch.Tensor:
    """Shapes as in :func:`perception.ops.reference.ms_deform_attn_pytorch`."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    return ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
