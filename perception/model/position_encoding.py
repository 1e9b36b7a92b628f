"""Sine position embeddings: 2-D for image feature maps, 1-D/4-D for text positions and anchor boxes."""
from __future__ import annotations

import math

import torch


def _sine_features(coordinate: torch.Tensor, num_features: int, temperature: float) -> torch.Tensor:
    """(...,) coordinate (already scaled to radians) -> (..., num_features) interleaved sin/cos."""
    dim_t = torch.arange(num_features, dtype=torch.float32, device=coordinate.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_features)
    angles = coordinate[..., None] / dim_t
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def image_position_embedding(valid_mask: torch.Tensor, num_channels: int, temperature: float) -> torch.Tensor:
    """Sine embedding of normalized (y, x) positions counted over valid pixels only.

    valid_mask: (batch, H, W) bool, True where the feature map covers the image (not padding).
    returns: (batch, num_channels, H, W) float32, y features first then x.
    """
    y_embed = valid_mask.cumsum(1, dtype=torch.float32)
    x_embed = valid_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    half = num_channels // 2
    embedding = torch.cat((_sine_features(y_embed, half, temperature), _sine_features(x_embed, half, temperature)), -1)
    return embedding.permute(0, 3, 1, 2)


def coordinate_position_embedding(coordinates: torch.Tensor, num_features: int, temperature: float = 10000.0) -> torch.Tensor:
    """Embed each coordinate of (..., n) values in [0, 1] (or raw text position ids) with num_features sines.

    For n >= 2 the first two embeddings are swapped, so (x, y, w, h) becomes [y, x, w, h] as in DETR.
    returns: (..., n * num_features), the dtype of ``coordinates``.
    """
    embeddings = [_sine_features(c * (2 * math.pi), num_features, temperature) for c in coordinates.unbind(-1)]
    if len(embeddings) >= 2:
        embeddings[0], embeddings[1] = embeddings[1], embeddings[0]
    return torch.cat(embeddings, dim=-1).to(coordinates.dtype)
