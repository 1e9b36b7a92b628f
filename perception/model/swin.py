"""Swin Transformer image backbone (Liu et al., 2021) returning multi-scale feature maps.

Windows always partition the map (a map smaller than a window is padded, never shrunk) and every
second block shifts its windows by half a window; feature maps are taken before each stage's patch
merging and normalized, as the published Grounding DINO checkpoints expect.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, wraps

import torch
import torch.nn.functional as F
from torch import nn

from perception.model.config import SwinConfig
from perception.model.linear import Linear, mlp

# Additive attention bias between tokens of different shifted regions inside one window.
SHIFTED_REGION_BIAS = -100.0


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample during training."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    @property
    def active(self) -> bool:
        return self.drop_prob > 0.0 and self.training

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return branch
        keep = 1.0 - self.drop_prob
        mask = branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1)).bernoulli_(keep)
        return branch * mask / keep


class PatchEmbedding(nn.Module):
    """Non-overlapping patch_size x patch_size patches -> embed_dim channels, then LayerNorm."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.projection = nn.Conv2d(3, config.embed_dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.norm = nn.LayerNorm(config.embed_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) -> (batch, H', W', embed_dim); the image is zero-padded to a multiple of the patch."""
        height, width = pixel_values.shape[-2:]
        pad_bottom, pad_right = -height % self.patch_size, -width % self.patch_size
        pixel_values = F.pad(pixel_values, (0, pad_right, 0, pad_bottom))
        # Contiguous channels-last: every block then reshapes its tokens without a copy.
        return self.norm(self.projection(pixel_values).permute(0, 2, 3, 1).contiguous())


def relative_position_index(window_size: int) -> torch.Tensor:
    """(window_size**2, window_size**2) index into the relative position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = Linear(dim, dim, bias=qkv_bias)
        self.key = Linear(dim, dim, bias=qkv_bias)
        self.value = Linear(dim, dim, bias=qkv_bias)
        self.output = Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def forward(self, windows: torch.Tensor, region_bias: torch.Tensor | None) -> torch.Tensor:
        """windows: (batch, num_windows, tokens, dim); region_bias: (num_windows, tokens, tokens) or None."""
        batch, num_windows, tokens, dim = windows.shape
        # (B, nW, T, dim) -> (B, nW, heads, T, head_dim)
        def split_heads(projected: torch.Tensor) -> torch.Tensor:
            return projected.view(batch, num_windows, tokens, self.num_heads, -1).transpose(2, 3)

        query, key, value = (split_heads(proj(windows)) for proj in (self.query, self.key, self.value))
        # (T*T, heads) -> (heads, T, T), broadcast over batch and windows
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(tokens, tokens, -1).permute(2, 0, 1)
        if region_bias is not None:
            bias = bias + region_bias[:, None]  # (nW, heads, T, T)
        # The fused CPU/GPU kernels take 4-D inputs: (B*nW, heads, T, head_dim) with the bias per window.
        bias = bias.to(query.dtype).expand(batch, num_windows, self.num_heads, tokens, tokens)
        attended = F.scaled_dot_product_attention(
            query.flatten(0, 1), key.flatten(0, 1), value.flatten(0, 1), attn_mask=bias.flatten(0, 1)
        )
        # (B*nW, heads, T, head_dim) -> (B, nW, T, dim)
        return self.output(attended.view(batch, num_windows, self.num_heads, tokens, -1).transpose(2, 3)
                           .reshape(batch, num_windows, tokens, dim))


def window_partition(feature_map: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of window_size -> (B, nW, window_size**2, C), row-major windows."""
    batch, height, width, channels = feature_map.shape
    windows = feature_map.view(batch, height // window_size, window_size, width // window_size, window_size, channels)
    return windows.transpose(2, 3).reshape(batch, -1, window_size * window_size, channels)


def _cached_per_shape(build):
    """Memoize a builder of constant tensors by its (hashable) arguments. The tensors are built outside
    inference mode even when first asked for inside it, so training can reuse them."""
    @lru_cache(maxsize=64)
    def cached_build(*args):
        with torch.inference_mode(False):
            return build(*args)

    @wraps(build)
    def cached(*args):
        # Fake tensors (FakeTensorMode, torch.compile's tracing) belong to one tracing session: never kept.
        if torch._guards.detect_fake_mode() is not None:
            return build(*args)
        return cached_build(*args)
    return cached


@_cached_per_shape
def shifted_region_bias(height: int, width: int, window_size: int, shift: int, device, dtype) -> torch.Tensor:
    """(nW, T, T) bias that keeps tokens from different regions of a cyclically shifted map apart."""
    def regions(length: int) -> torch.Tensor:
        index = torch.arange(length, device=device)
        return (index >= length - window_size).long() + (index >= length - shift).long()

    region_map = (regions(height)[:, None] * 3 + regions(width)[None, :]).to(dtype)
    region_windows = window_partition(region_map[None, :, :, None], window_size)[0, :, :, 0]  # (nW, T)
    different = region_windows[:, None, :] != region_windows[:, :, None]
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, SHIFTED_REGION_BIAS)


@dataclass(frozen=True)
class WindowLayout:
    """Where each window token comes from in a (height x width) map, padded to whole windows and
    cyclically shifted by `shift`: pad + roll + partition (and back) become one gather each way.

    gather: (nW*T,) row-major pixel index of each window token (0 where the token is padding);
    padding: window-token positions that are padding (zeros after the norm), or None;
    scatter: (height*width,) window-token position of each pixel, the inverse of gather.
    """

    num_windows: int
    padded_size: tuple[int, int]
    gather: torch.Tensor
    padding: torch.Tensor | None
    scatter: torch.Tensor


@_cached_per_shape
def window_layout(height: int, width: int, window_size: int, shift: int, device) -> WindowLayout:
    """The WindowLayout of a (height x width) map for windows of window_size shifted by shift."""
    padded_height, padded_width = height + -height % window_size, width + -width % window_size
    rows = (torch.arange(padded_height, device=device) + shift) % padded_height  # roll by -shift
    cols = (torch.arange(padded_width, device=device) + shift) % padded_width
    inside = (rows[:, None] < height) & (cols[None, :] < width)
    source = torch.where(inside, rows[:, None] * width + cols[None, :], 0)
    gather = window_partition(source[None, :, :, None], window_size).flatten()
    is_padding = window_partition(~inside[None, :, :, None], window_size).flatten()
    # Every pixel is gathered exactly once, so sorting the window-token positions by the pixel they hold
    # (padding tokens last, in position order) gives the inverse permutation followed by the padding
    # positions, with no boolean-mask indexing: the tensors' sizes never depend on their values.
    order = torch.where(is_padding, height * width, gather).argsort(stable=True)
    scatter = order[: height * width]
    padding = order[height * width :] if gather.numel() > height * width else None
    num_windows = (padded_height // window_size) * (padded_width // window_size)
    return WindowLayout(num_windows, (padded_height, padded_width), gather, padding, scatter)


class SwinMlp(nn.Module):
    """fc1 -> GELU -> fc2 (state-dict keys fc1, fc2), the GELU in fc1's pass where oneDNN computes it."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """fc2(GELU(fc1(tokens))), plus ``residual`` if given (`mlp`: in row chunks on large maps)."""
        return mlp(tokens, self.fc1, self.fc2, "gelu", residual)


class SwinBlock(nn.Module):
    """(Shifted) window attention and an MLP, each pre-normalized with a residual connection."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int, shift: int, drop_path: float) -> None:
        super().__init__()
        self.window_size = config.window_size
        self.shift = shift
        self.norm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = WindowAttention(dim, num_heads, config.window_size, config.qkv_bias)
        self.norm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        hidden = int(dim * config.mlp_ratio)
        self.mlp = SwinMlp(dim, hidden)
        self.drop_path = DropPath(drop_path)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C). The map is padded to whole windows after the norm (zeros) and
        rolled by -shift before partitioning; WindowLayout does all of that in one gather."""
        batch, height, width, channels = feature_map.shape
        size = self.window_size
        layout = window_layout(height, width, size, self.shift, feature_map.device)
        tokens = feature_map.reshape(batch, height * width, channels)
        windows = self.norm_before(tokens.index_select(1, layout.gather))
        if layout.padding is not None:
            windows.index_fill_(1, layout.padding, 0)
        region_bias = None
        if self.shift:
            region_bias = shifted_region_bias(*layout.padded_size, size, self.shift, windows.device, windows.dtype)
        attended = self.attention(windows.view(batch, layout.num_windows, size * size, channels), region_bias)
        attended = attended.view(batch, -1, channels).index_select(1, layout.scatter)
        feature_map = feature_map + self.drop_path(attended.view(batch, height, width, channels))
        if self.drop_path.active:
            return feature_map + self.drop_path(self.mlp(self.norm_after(feature_map)))
        return self.mlp(self.norm_after(feature_map), residual=feature_map)


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), normalized and reduced to 2C: halves the resolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C); odd sizes are zero-padded."""
        height, width = feature_map.shape[1:3]
        feature_map = F.pad(feature_map, (0, 0, 0, width % 2, 0, height % 2))
        # Order (row, col): (0,0), (1,0), (0,1), (1,1), as the published weights expect.
        merged = torch.cat([feature_map[:, row::2, col::2] for col in (0, 1) for row in (0, 1)], dim=-1)
        return self.reduction(self.norm(merged))


class SwinStage(nn.Module):
    def __init__(self, config: SwinConfig, stage: int, drop_paths: list[float]) -> None:
        super().__init__()
        dim = config.embed_dim * 2**stage
        self.blocks = nn.ModuleList(
            SwinBlock(config, dim, config.num_heads[stage], 0 if i % 2 == 0 else config.window_size // 2, drop_paths[i])
            for i in range(config.depths[stage])
        )
        self.downsample = PatchMerging(dim) if stage < len(config.depths) - 1 else None


class SwinBackbone(nn.Module):
    """pixels -> one normalized feature map per entry of ``config.out_indices``."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbedding(config)
        total_blocks = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]
        starts = [sum(config.depths[:stage]) for stage in range(len(config.depths))]
        self.stages = nn.ModuleList(
            SwinStage(config, stage, rates[start : start + depth])
            for stage, (start, depth) in enumerate(zip(starts, config.depths))
        )
        channels = config.stage_channels()
        self.output_norms = nn.ModuleList(nn.LayerNorm(channels[stage]) for stage in config.out_indices)

    @property
    def output_channels(self) -> list[int]:
        return [self.config.stage_channels()[stage] for stage in self.config.out_indices]

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalized pixels -> list of (B, C_i, H_i, W_i), strides 8, 16, 32 for out_indices 1-3."""
        feature_map = self.patch_embed(pixel_values)
        outputs = []
        for stage_index, stage in enumerate(self.stages):
            for block in stage.blocks:
                feature_map = block(feature_map)
            if stage_index in self.config.out_indices:
                norm = self.output_norms[self.config.out_indices.index(stage_index)]
                outputs.append(norm(feature_map).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                feature_map = stage.downsample(feature_map)
        return outputs
