"""Pure-PyTorch multi-scale deformable attention: the numerical reference every kernel is tested against.

Sampling is bilinear with zero padding outside the map, and a location (x, y) in [0, 1] maps to
pixel coordinate x * width - 0.5 (grid_sample with align_corners=False), as in Deformable DETR.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ms_deform_attn_pytorch(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attend to a few sampled points on every level of a flattened feature pyramid.

    value: (batch, num_values, num_heads, head_dim), levels flattened row-major and concatenated.
    spatial_shapes: (num_levels, 2) int64, (height, width) of each level.
    level_start_index: (num_levels,) int64, offset of each level in num_values (unused here; the
        shapes determine it, the native kernels take it to avoid a prefix sum).
    sampling_locations: (batch, num_queries, num_heads, num_levels, num_points, 2), (x, y) normalized
        so that [0, 1] spans the map; outside that range samples read zeros.
    attention_weights: (batch, num_queries, num_heads, num_levels, num_points).
    returns: (batch, num_queries, num_heads * head_dim).
    """
    del level_start_index
    batch, _, num_heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    level_sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    value_per_level = value.split(level_sizes, dim=1)
    # grid_sample wants coordinates in [-1, 1].
    sampling_grids = 2 * sampling_locations - 1
    sampled_per_level = []
    for level, (height, width) in enumerate(spatial_shapes.tolist()):
        # (batch, h*w, heads, dim) -> (batch*heads, dim, h, w)
        level_value = value_per_level[level].flatten(2).transpose(1, 2)
        level_value = level_value.reshape(batch * num_heads, head_dim, height, width)
        # (batch, queries, heads, points, 2) -> (batch*heads, queries, points, 2)
        level_grid = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        # (batch*heads, dim, queries, points)
        sampled_per_level.append(
            F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # (batch, queries, heads, levels, points) -> (batch*heads, 1, queries, levels*points)
    weights = attention_weights.transpose(1, 2).reshape(batch * num_heads, 1, num_queries, num_levels * num_points)
    # (batch*heads, dim, queries, levels*points) weighted sum -> (batch, heads*dim, queries)
    output = (torch.stack(sampled_per_level, dim=-2).flatten(-2) * weights).sum(-1)
    output = output.view(batch, num_heads * head_dim, num_queries)
    return output.transpose(1, 2).contiguous()
