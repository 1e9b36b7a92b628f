"""Multi-scale deformable attention with its learned projections (Deformable DETR, Zhu et al. 2021).

Each query predicts, per head, level and point, an offset around its reference point and a weight;
the sampling core is :func:`perception.ops.multi_scale_deformable_attention`.

Sampling locations are computed in float32 (at least) whatever the model's dtype. A location is a fraction of
the level's width: in bfloat16 (8 significant bits) a point near the right edge of the 167-token-wide first
level at 800x1333 is rounded by up to a third of a token. With float32 locations the bundled model's bfloat16
scores moved from float32's by 0.005 on average instead of 0.012, and by at most 0.006 for 90% of detections
instead of 0.030 (143 detections on 40 generated scenes at 256x256). On the CPU the sampling itself then runs in float32
too (values upcast): the native kernel is no faster in bfloat16 (38 against 34 ms for an encoder layer at
800x1333 on an AMD EPYC with AVX512-BF16). On CUDA it runs in the model's dtype, locations rounded once.
"""
from __future__ import annotations

import torch
from torch import nn

from perception.model.linear import Linear, linear
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

    def sampling_origins(self, reference_points: torch.Tensor) -> torch.Tensor:
        """(B, Q, num_levels, 2) reference points -> (B, Q, heads, levels, points, 2), contiguous, in float32 at
        least: every sample's origin. The encoder computes it once for all its layers; each layer then adds its
        offsets in one contiguous pass (a broadcast add over these shapes is ten times slower)."""
        batch, num_queries, levels, _ = reference_points.shape
        points = reference_points.to(torch.promote_types(reference_points.dtype, torch.float32))
        return points[:, :, None, :, None, :].expand(
            batch, num_queries, self.num_heads, levels, self.num_points, 2).contiguous()

    def forward(self, queries: torch.Tensor, reference_points: torch.Tensor, values: torch.Tensor,
                value_padding_mask: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor) -> torch.Tensor:
        """queries: (B, Q, dim), position embedding already added.
        reference_points: (B, Q, num_levels, 2) normalized (x, y) points, the same as
            :meth:`sampling_origins`, or (B, Q, num_levels, 4) normalized (cx, cy, w, h) boxes whose size scales
            the offsets. Best in float32: they are not rounded to the queries' dtype.
        values: (B, N, dim) flattened multi-scale features; value_padding_mask: (B, N) True = padding.
        returns: (B, Q, dim) in the queries' dtype.
        """
        batch, num_queries, _ = queries.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        location_dtype = torch.promote_types(queries.dtype, torch.float32)
        if reference_points.dim() == 4 and reference_points.shape[-1] == 2:
            reference_points = self.sampling_origins(reference_points)
        if reference_points.dim() == 6:
            # Offsets are in pixels of each level: fractions of its (width, height) once divided by them. The
            # division is folded into the projection's rows, per (level, x or y) output: 256x256 weights divided
            # instead of every offset.
            level_sizes = spatial_shapes.flip(-1).to(location_dtype)  # (levels, 2) (width, height)
            divisors = level_sizes[None, :, None, :].expand(heads, levels, points, 2).reshape(-1)
            projection = self.sampling_offsets
            weight = (projection.weight.to(location_dtype) / divisors[:, None]).to(projection.weight.dtype)
            bias = (projection.bias.to(location_dtype) / divisors).to(projection.bias.dtype)
            offsets = linear(queries, weight, bias).view(batch, num_queries, heads, levels, points, 2)
            locations = reference_points.to(location_dtype) + offsets
        elif reference_points.shape[-1] == 4:
            # Offsets are fractions of half the box size, spread over the points.
            boxes = reference_points.to(location_dtype)[:, :, None, :, None, :]
            offsets = self.sampling_offsets(queries).view(batch, num_queries, heads, levels, points, 2)
            locations = boxes[..., :2] + offsets.to(location_dtype) / points * boxes[..., 2:] * 0.5
        else:
            raise ValueError(f"reference points must end in 2 or 4 coordinates, got {tuple(reference_points.shape)}")
        sampling_dtype = location_dtype if queries.device.type == "cpu" else queries.dtype
        # In place on the projection's fresh output (its backward does not need it): no copy of every token.
        value = self.value_proj(values).masked_fill_(value_padding_mask[..., None], 0.0)
        value = value.view(batch, value.shape[1], heads, -1).to(sampling_dtype)
        weights = self.attention_weights(queries).view(batch, num_queries, heads, levels * points)
        weights = weights.softmax(-1, dtype=sampling_dtype).view(batch, num_queries, heads, levels, points)
        sampled = multi_scale_deformable_attention(
            value, spatial_shapes, level_start_index, locations.to(sampling_dtype), weights,
            implementation=self.implementation,
        )
        return self.output_proj(sampled.to(queries.dtype))
