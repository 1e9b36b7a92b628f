"""Multi-scale deformable attention with its learned projections (Deformable DETR, Zhu et al. 2021).

Each query predicts, per head, level and point, an offset around its reference point and a weight;
the sampling core is :func:`perception.ops.multi_scale_deformable_attention`.
"""
from __future__ import annotations

import torch
from torch import nn

from perception.model.linear import Linear
from perception.ops import multi_scale_deformable_attention


class MultiScaleDeformableAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"deformable attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.sampling_offsets = Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = Linear(dim, dim)
        self.output_proj = Linear(dim, dim)
        # "auto" | "cuda" | "cpu" | "pytorch"; set for the whole model by GroundingDino.set_attention_implementation.
        self.implementation = "auto"

    def forward(self, queries: torch.Tensor, reference_points: torch.Tensor, values: torch.Tensor,
                value_padding_mask: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor) -> torch.Tensor:
        """queries: (B, Q, dim), position embedding already added.
        reference_points: (B, Q, num_levels, 2) normalized (x, y) points, or (B, Q, num_levels, 4)
            normalized (cx, cy, w, h) boxes whose size scales the offsets.
        values: (B, N, dim) flattened multi-scale features; value_padding_mask: (B, N) True = padding.
        returns: (B, Q, dim).
        """
        batch, num_queries, _ = queries.shape
        value = self.value_proj(values).masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(batch, value.shape[1], self.num_heads, -1)
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        offsets = self.sampling_offsets(queries).view(batch, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(queries).view(batch, num_queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, num_queries, heads, levels, points)
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level: normalize by (width, height).
            normalizer = spatial_shapes.flip(-1).to(offsets.dtype)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            # Offsets are fractions of half the box size, spread over the points.
            centers, sizes = reference_points[:, :, None, :, None, :2], reference_points[:, :, None, :, None, 2:]
            locations = centers + offsets / points * sizes * 0.5
        else:
            raise ValueError(f"reference points must end in 2 or 4 coordinates, got {reference_points.shape[-1]}")
        sampled = multi_scale_deformable_attention(
            value, spatial_shapes, level_start_index, locations, weights, implementation=self.implementation
        )
        return self.output_proj(sampled)
