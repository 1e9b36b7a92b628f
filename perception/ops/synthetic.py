"""Synthetic inputs for multi-scale deformable attention: the tests' odd shapes and the benchmark's encoder shapes.

All tensors follow the layouts of :func:`perception.ops.reference.ms_deform_attn_pytorch`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Strides of the four encoder levels of Grounding DINO (Swin stages 2-4 plus one extra level).
ENCODER_STRIDES = (8, 16, 32, 64)


@dataclass(frozen=True)
class AttentionInputs:
    value: torch.Tensor  # (batch, num_values, num_heads, head_dim)
    spatial_shapes: torch.Tensor  # (num_levels, 2) int64 (height, width)
    level_start_index: torch.Tensor  # (num_levels,) int64
    sampling_locations: torch.Tensor  # (batch, num_queries, num_heads, num_levels, num_points, 2) (x, y)
    attention_weights: torch.Tensor  # (batch, num_queries, num_heads, num_levels, num_points)

    def as_args(self) -> tuple[torch.Tensor, ...]:
        """The five tensors in the argument order of multi_scale_deformable_attention."""
        return (self.value, self.spatial_shapes, self.level_start_index, self.sampling_locations, self.attention_weights)


def encoder_level_shapes(image_height: int, image_width: int) -> list[tuple[int, int]]:
    """(height, width) of each encoder level for an image: ceil(size / stride), e.g. 800x1333 -> 100x167 ... 13x21."""
    return [(math.ceil(image_height / stride), math.ceil(image_width / stride)) for stride in ENCODER_STRIDES]


def level_tensors(level_shapes: list[tuple[int, int]], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """spatial_shapes (num_levels, 2) and level_start_index (num_levels,), both int64."""
    spatial_shapes = torch.tensor(level_shapes, dtype=torch.int64, device=device).reshape(-1, 2)
    level_sizes = spatial_shapes.prod(dim=1)
    level_start_index = torch.cat([level_sizes.new_zeros(1), level_sizes.cumsum(0)[:-1]])
    return spatial_shapes, level_start_index


def random_inputs(
    level_shapes: list[tuple[int, int]],
    *,
    batch: int,
    num_heads: int,
    head_dim: int,
    num_queries: int,
    num_points: int,
    location_range: tuple[float, float] = (-0.25, 1.25),
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> AttentionInputs:
    """Uniform random locations in location_range (the default puts ~30% of samples across a border),
    standard-normal values, and attention weights that sum to 1 per (query, head) as in the model."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes, level_start_index = level_tensors(level_shapes)
    num_values = int(spatial_shapes.prod(dim=1).sum())
    num_levels = len(level_shapes)
    low, high = location_range
    value = torch.randn(batch, num_values, num_heads, head_dim, generator=generator, dtype=torch.float64)
    locations = low + (high - low) * torch.rand(
        batch, num_queries, num_heads, num_levels, num_points, 2, generator=generator, dtype=torch.float64
    )
    logits = torch.randn(batch, num_queries, num_heads, num_levels * num_points, generator=generator, dtype=torch.float64)
    weights = logits.softmax(-1).view(batch, num_queries, num_heads, num_levels, num_points)
    return AttentionInputs(
        value.to(device=device, dtype=dtype),
        spatial_shapes.to(device),
        level_start_index.to(device),
        locations.to(device=device, dtype=dtype),
        weights.to(device=device, dtype=dtype),
    )


def encoder_inputs(
    image_height: int,
    image_width: int,
    *,
    num_heads: int = 8,
    head_dim: int = 32,
    num_points: int = 4,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> AttentionInputs:
    """One encoder layer's inputs for one image: every token is a query (batch 1, about 22,000 queries at 800x1333).

    Locations are as the encoder makes them: each query's reference point (its own pixel centre,
    normalized) plus, per head, offsets of 1..num_points pixels along the head's direction (the
    Deformable DETR initialisation) with unit Gaussian jitter, in pixels of the sampled level.
    """
    generator = torch.Generator().manual_seed(seed)
    level_shapes = encoder_level_shapes(image_height, image_width)
    spatial_shapes, level_start_index = level_tensors(level_shapes)
    reference_points = torch.cat(
        [
            torch.stack(
                torch.meshgrid((torch.arange(width) + 0.5) / width, (torch.arange(height) + 0.5) / height, indexing="xy"),
                dim=-1,
            ).reshape(-1, 2)
            for height, width in level_shapes
        ]
    )  # (num_queries, 2) normalized (x, y)
    num_queries, num_levels = reference_points.shape[0], len(level_shapes)
    angles = torch.arange(num_heads) * (2 * math.pi / num_heads)
    directions = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (num_heads, 2)
    steps = torch.arange(1, num_points + 1, dtype=torch.float32)
    # (num_heads, 1, num_points, 2) pixels, broadcast over levels, plus jitter per query.
    offsets = directions[:, None, None, :] * steps[None, None, :, None]
    offsets = offsets + torch.randn(num_queries, num_heads, num_levels, num_points, 2, generator=generator)
    level_size_xy = spatial_shapes.flip(-1).to(torch.float32)  # (num_levels, 2) (width, height)
    locations = reference_points[:, None, None, None, :] + offsets / level_size_xy[None, None, :, None, :]
    value = torch.randn(1, num_queries, num_heads, head_dim, generator=generator)
    logits = torch.randn(1, num_queries, num_heads, num_levels * num_points, generator=generator)
    weights = logits.softmax(-1).view(1, num_queries, num_heads, num_levels, num_points)
    return AttentionInputs(
        value.to(dtype), spatial_shapes, level_start_index, locations[None].to(dtype), weights.to(dtype)
    )
