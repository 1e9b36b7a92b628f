"""Image backbone of Grounding DINO: Swin feature maps projected to hidden_dim, extra stride-2 levels,
padding masks, sine position embeddings plus learned level embeddings, flattened for the encoder."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from perception.model.config import GroundingDinoConfig
from perception.model.position_encoding import image_position_embedding
from perception.model.swin import SwinBackbone
from perception.ops.checks import record_checked_levels

INPUT_PROJECTION_GROUPS = 32  # GroupNorm groups of each level's input projection, as in the reference


@dataclass
class MultiScaleFeatures:
    """Image features of every level, flattened row-major and concatenated level after level.

    features: (batch, num_tokens, hidden_dim).
    position_embeddings: (batch, num_tokens, hidden_dim), sine position plus level embedding.
    padding_mask: (batch, num_tokens) bool, True = token covers only image padding.
    spatial_shapes: (num_levels, 2) int64 (height, width) per level; spatial_shapes_list the same as ints.
    level_start_index: (num_levels,) int64 offset of each level in num_tokens.
    valid_ratios: (batch, num_levels, 2) float32, (width, height) fraction of each map covering the image
        (float32 whatever the features' dtype: bfloat16 would move reference points by up to 0.2%).
    """

    features: torch.Tensor
    position_embeddings: torch.Tensor
    padding_mask: torch.Tensor
    spatial_shapes: torch.Tensor
    spatial_shapes_list: list[tuple[int, int]]
    level_start_index: torch.Tensor
    valid_ratios: torch.Tensor


def _projection(in_channels: int, hidden_dim: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_dim, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2),
        nn.GroupNorm(INPUT_PROJECTION_GROUPS, hidden_dim),
    )


def valid_ratios(valid_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, H, W) bool valid mask -> (batch, 2) fraction of valid columns and rows."""
    height, width = valid_mask.shape[1:]
    valid_height = valid_mask[:, :, 0].sum(1, dtype=dtype)
    valid_width = valid_mask[:, 0, :].sum(1, dtype=dtype)
    return torch.stack([valid_width / width, valid_height / height], -1)


def level_shapes(config: GroundingDinoConfig, height: int, width: int) -> list[tuple[int, int]]:
    """(height, width) of each feature level for a (height, width) input, finest first.

    A level of stride s is ceil(height / s) x ceil(width / s): the patch embedding, the patch merging and
    the extra stride-2 convolutions all pad rather than crop. Swin stage i has stride patch_size * 2**i;
    each extra level halves the one before.
    """
    strides = [config.backbone.patch_size * 2**stage for stage in config.backbone.out_indices]
    strides += [strides[-1] * 2**extra for extra in range(1, config.num_feature_levels - len(strides) + 1)]
    return [(math.ceil(height / stride), math.ceil(width / stride)) for stride in strides]


def image_token_count(config: GroundingDinoConfig, height: int, width: int) -> int:
    """How many image tokens (all levels together) a (height, width) input gives."""
    return sum(rows * columns for rows, columns in level_shapes(config, height, width))


class ImageBackbone(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        self.config = config
        self.swin = SwinBackbone(config.backbone)
        channels = self.swin.output_channels
        projections = [_projection(c, config.hidden_dim, 1, 1) for c in channels]
        extra_in = channels[-1]
        for _ in range(config.num_feature_levels - len(channels)):
            projections.append(_projection(extra_in, config.hidden_dim, 3, 2))
            extra_in = config.hidden_dim
        self.input_projections = nn.ModuleList(projections)
        self.level_embeddings = nn.Parameter(torch.zeros(config.num_feature_levels, config.hidden_dim))

    def forward(self, pixel_values: torch.Tensor, image_padding_mask: torch.Tensor) -> MultiScaleFeatures:
        """pixel_values: (batch, 3, H, W) normalized; image_padding_mask: (batch, H, W) bool, True = padding."""
        pixel_valid = (~image_padding_mask).float()[None]
        swin_maps = self.swin(pixel_values)
        levels = [projection(feature_map) for projection, feature_map in zip(self.input_projections, swin_maps)]
        for level in range(len(swin_maps), self.config.num_feature_levels):
            source = swin_maps[-1] if level == len(swin_maps) else levels[-1]
            levels.append(self.input_projections[level](source))

        features, positions, padding, shapes, ratios = [], [], [], [], []
        for level, feature_map in enumerate(levels):
            height, width = feature_map.shape[-2:]
            # Nearest-neighbour downsampling of the pixel mask, as the reference does.
            valid = F.interpolate(pixel_valid, size=(height, width)).to(torch.bool)[0]
            position = image_position_embedding(valid, self.config.hidden_dim, self.config.position_temperature)
            # (B, C, H, W) -> (B, H*W, C)
            features.append(feature_map.flatten(2).transpose(1, 2))
            positions.append(position.to(feature_map.dtype).flatten(2).transpose(1, 2) + self.level_embeddings[level])
            padding.append(~valid.flatten(1))
            shapes.append((height, width))
            ratios.append(valid_ratios(valid, torch.float32))
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=pixel_values.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
        if not torch.compiler.is_compiling():  # a compiled graph's tensors are not these
            record_checked_levels(spatial_shapes, level_start_index, shapes)
        return MultiScaleFeatures(
            features=torch.cat(features, 1),
            position_embeddings=torch.cat(positions, 1),
            padding_mask=torch.cat(padding, 1),
            spatial_shapes=spatial_shapes,
            spatial_shapes_list=shapes,
            level_start_index=level_start_index,
            valid_ratios=torch.stack(ratios, 1),
        )
