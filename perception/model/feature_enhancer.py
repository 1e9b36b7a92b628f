"""Feature enhancer (Grounding DINO, section 3.1): per layer, bi-directional image-text cross-attention
(fusion), text self-attention within phrases, and multi-scale deformable self-attention over image tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.model.attention import MultiHeadAttention
from perception.model.backbone import MultiScaleFeatures
from perception.model.config import GroundingDinoConfig
from perception.model.deformable_attention import MultiScaleDeformableAttention
from perception.model.linear import Linear, linear, mlp
from perception.model.position_encoding import coordinate_position_embedding
from perception.model.swin import DropPath
from perception.model.text_encoder import EncodedText

# Logits are clamped to this range before the softmax, as the published models were trained (fp16-safe).
FUSION_LOGIT_LIMIT = 50_000.0
LAYER_SCALE_INIT = 1e-4


def bounded_similarity(similarity: torch.Tensor) -> torch.Tensor:
    """The fusion's similarity less its largest value, within +-FUSION_LOGIT_LIMIT, as published. Clamped
    before the subtraction as well: a float16 product past 65504 is inf and inf - inf would be NaN; the
    first clamp changes nothing in the range the limit was chosen for."""
    similarity = similarity.clamp(-FUSION_LOGIT_LIMIT, FUSION_LOGIT_LIMIT)
    return (similarity - similarity.max()).clamp(-FUSION_LOGIT_LIMIT, FUSION_LOGIT_LIMIT)


class FeedForward(nn.Module):
    """fc1 -> ReLU -> dropout -> fc2 -> dropout, added to the input, then LayerNorm."""

    def __init__(self, dim: int, hidden: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = dropout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.dropout):
            # The ReLU in fc1's pass (oneDNN) or in place on its fresh output; in row chunks at 800x1333 (`mlp`).
            return self.norm(mlp(hidden_states, self.fc1, self.fc2, "relu", residual=hidden_states))
        update = F.dropout(linear(hidden_states, self.fc1.weight, self.fc1.bias, "relu"), self.dropout, self.training)
        output = F.dropout(self.fc2(update), self.dropout, self.training)
        return self.norm(output.add_(hidden_states))


class BiAttention(nn.Module):
    """Image-to-text and text-to-image attention sharing one similarity matrix.

    Two exact evaluation orders. `direct` projects every image token to the attention width, as the
    published code does. `factorized` folds the image-side projections into the few text tokens instead:
    with W the vision query, vision value and vision output weights (attention_dim x dim per head),
    (image W_q^T) k^T = image (W_q^T k^T), softmax-weighted sums of (image W_v^T + b_v) equal the weighted
    image times W_v^T plus b_v (the weights sum to one), and the heads' outputs projected by W_o are one
    matmul against (text values W_o^T) stacked per head. Every per-image-token cost then scales with
    heads x text tokens instead of the attention width (1024 for Grounding-DINO-T), which removes three
    256x1024 projections of ~22,000 tokens per encoder layer at 800x1333. `forward` takes whichever needs
    fewer multiply-adds for the prompt at hand; both give the same numbers up to float rounding.
    """

    def __init__(self, dim: int, attention_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (attention_dim // num_heads) ** -0.5
        self.vision_query = Linear(dim, attention_dim)
        self.text_key = Linear(dim, attention_dim)
        self.vision_value = Linear(dim, attention_dim)
        self.text_value = Linear(dim, attention_dim)
        self.vision_output = Linear(attention_dim, dim)
        self.text_output = Linear(attention_dim, dim)

    def factorized_is_cheaper(self, num_text: int) -> bool:
        """Per image token: three dim x attention_dim projections plus three Nt x attention_dim products
        (direct) against three heads*Nt x dim products (factorized)."""
        dim, attention_dim = self.vision_query.in_features, self.vision_query.out_features
        return self.num_heads * num_text * dim < dim * attention_dim + num_text * attention_dim

    def forward(self, vision: torch.Tensor, text: torch.Tensor, vision_padding_mask: torch.Tensor,
                text_padding_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """vision: (B, Nv, dim); text: (B, Nt, dim); masks True = padding. Returns the two updates."""
        attend = self.factorized if self.factorized_is_cheaper(text.shape[1]) else self.direct
        return attend(vision, text, vision_padding_mask, text_padding_mask)

    def _split_heads(self, projected: torch.Tensor) -> torch.Tensor:
        """(B, L, attention_dim) -> (B, heads, L, head_dim)"""
        return projected.view(projected.shape[0], projected.shape[1], self.num_heads, -1).transpose(1, 2)

    def _head_weights(self, linear: nn.Linear) -> torch.Tensor:
        """A dim -> attention_dim projection's weight per head: (heads, head_dim, dim)."""
        return linear.weight.view(self.num_heads, -1, linear.in_features)

    def direct(self, vision, text, vision_padding_mask, text_padding_mask):
        queries = self._split_heads(self.vision_query(vision) * self.scale)
        similarity = queries @ self._split_heads(self.text_key(text)).transpose(2, 3)  # (B, heads, Nv, Nt)
        similarity = bounded_similarity(similarity)
        text_logits = similarity.transpose(2, 3)
        text_logits = (text_logits - text_logits.max(-1, keepdim=True).values).clamp(-FUSION_LOGIT_LIMIT, FUSION_LOGIT_LIMIT)
        text_weights = text_logits.masked_fill(vision_padding_mask[:, None, None, :], float("-inf")).softmax(-1)
        vision_weights = similarity.masked_fill(text_padding_mask[:, None, None, :], float("-inf")).softmax(-1)
        vision_update = vision_weights @ self._split_heads(self.text_value(text))
        text_update = text_weights @ self._split_heads(self.vision_value(vision))
        # (B, heads, L, head_dim) -> (B, L, attention_dim)
        merge = lambda x: x.transpose(1, 2).flatten(2)  # noqa: E731
        return self.vision_output(merge(vision_update)), self.text_output(merge(text_update))

    def factorized(self, vision, text, vision_padding_mask, text_padding_mask):
        batch, num_vision, dim = vision.shape
        num_text = text.shape[1]
        keys = self._split_heads(self.text_key(text)) * self.scale  # (B, heads, Nt, head_dim)
        # similarity = vision @ (keys W_q)^T + keys b_q, as (B, Nv, heads*Nt) with heads outermost.
        folded_query = (keys @ self._head_weights(self.vision_query)).flatten(1, 2)  # (B, heads*Nt, dim)
        query_bias = (keys @ self.vision_query.bias.view(self.num_heads, -1, 1)).flatten(1)  # (B, heads*Nt)
        similarity = torch.baddbmm(query_bias[:, None, :], vision, folded_query.transpose(1, 2))
        similarity = bounded_similarity(similarity)
        # Text side: softmax over image tokens, the last dim of the transposed view (B, heads*Nt, Nv), as `direct`
        # does. A softmax over dim 1 of (B, Nv, heads*Nt) runs on a GPU as torch's strided ("spatial") kernel,
        # which took 12.8 ms of each encoder layer on an H200 at 800x1333 (77 of the model's 92 ms of kernels);
        # over the last dim it is the contiguous kernel after one small copy. The same time on a CPU.
        text_logits = similarity.transpose(1, 2)
        text_logits = (text_logits - text_logits.max(-1, keepdim=True).values).clamp(-FUSION_LOGIT_LIMIT, FUSION_LOGIT_LIMIT)
        text_weights = text_logits.masked_fill(vision_padding_mask[:, None, :], float("-inf")).softmax(-1)
        vision_weights = similarity.view(batch, num_vision, self.num_heads, num_text)
        vision_weights = vision_weights.masked_fill(text_padding_mask[:, None, None, :], float("-inf")).softmax(-1)
        # Image side: each head's text values already projected by its slice of the output weight.
        output_heads = self.vision_output.weight.view(dim, self.num_heads, -1).permute(1, 2, 0)  # (heads, head_dim, dim)
        projected_values = (self._split_heads(self.text_value(text)) @ output_heads).flatten(1, 2)  # (B, heads*Nt, dim)
        vision_update = torch.baddbmm(self.vision_output.bias, vision_weights.flatten(2), projected_values)
        # Text side: the weighted image tokens, then each head's value projection.
        weighted_vision = (text_weights @ vision).view(batch, self.num_heads, num_text, dim)
        text_values = weighted_vision @ self._head_weights(self.vision_value).transpose(1, 2)
        text_values = text_values + self.vision_value.bias.view(self.num_heads, 1, -1)
        return vision_update, self.text_output(text_values.transpose(1, 2).flatten(2))


class FusionLayer(nn.Module):
    """Pre-normalized bi-attention with layer-scale residuals (gammas)."""

    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.vision_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.text_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = BiAttention(dim, config.encoder_ffn_dim // 2, config.encoder_heads // 2)
        self.vision_gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.text_gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.drop_path = DropPath(config.fusion_drop_path)

    def forward(self, vision, text, vision_padding_mask, text_padding_mask):
        vision, text = self.vision_norm(vision), self.text_norm(text)
        vision_update, text_update = self.attention(vision, text, vision_padding_mask, text_padding_mask)
        return (vision + self.drop_path(self.vision_gamma * vision_update),
                text + self.drop_path(self.text_gamma * text_update))


class TextEnhancerLayer(nn.Module):
    """Self-attention among the tokens of each phrase, then a feed-forward network."""

    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.self_attention = MultiHeadAttention(dim, config.encoder_heads // 2)
        self.attention_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.ffn = FeedForward(dim, config.encoder_ffn_dim // 2, 0.0, config.layer_norm_eps)

    def forward(self, text: torch.Tensor, text_position: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        queries = text + text_position
        text = self.attention_norm(text + self.self_attention(queries, queries, text, allowed))
        return self.ffn(text)


class DeformableEncoderLayer(nn.Module):
    """Multi-scale deformable self-attention over all image tokens, then a feed-forward network."""

    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.self_attention = MultiScaleDeformableAttention(
            dim, config.encoder_heads, config.num_feature_levels, config.encoder_points
        )
        self.attention_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.ffn = FeedForward(dim, config.encoder_ffn_dim, config.dropout, config.layer_norm_eps)
        self.dropout = config.dropout

    def forward(self, image: torch.Tensor, image_features: MultiScaleFeatures, sampling_origins: torch.Tensor):
        """sampling_origins: the encoder's reference points as MultiScaleDeformableAttention.sampling_origins
        gives them, shared by all layers."""
        attended = self.self_attention(
            image + image_features.position_embeddings, sampling_origins, image, image_features.padding_mask,
            image_features.spatial_shapes, image_features.level_start_index,
        )
        image = self.attention_norm(F.dropout(attended, self.dropout, self.training).add_(image))
        return self.ffn(image)


class FeatureEnhancerLayer(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        self.fusion = FusionLayer(config)
        self.text_layer = TextEnhancerLayer(config)
        self.image_layer = DeformableEncoderLayer(config)


def encoder_reference_points(image_features: MultiScaleFeatures) -> torch.Tensor:
    """Centre of every image token, normalized to the valid area: (B, num_tokens, num_levels, 2) (x, y) in
    float32 (valid_ratios' dtype) whatever the features' dtype (see perception.model.deformable_attention)."""
    ratios = image_features.valid_ratios
    points = []
    for level, (height, width) in enumerate(image_features.spatial_shapes_list):
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, height - 0.5, height, dtype=ratios.dtype, device=ratios.device),
            torch.linspace(0.5, width - 0.5, width, dtype=ratios.dtype, device=ratios.device),
            indexing="ij",
        )
        xs = xs.reshape(-1)[None] / (ratios[:, None, level, 0] * width)
        ys = ys.reshape(-1)[None] / (ratios[:, None, level, 1] * height)
        points.append(torch.stack((xs, ys), -1))
    return torch.cat(points, 1)[:, :, None] * ratios[:, None]


class FeatureEnhancer(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        self.hidden_dim = config.hidden_dim
        self.layers = nn.ModuleList(FeatureEnhancerLayer(config) for _ in range(config.encoder_layers))

    def forward(self, image_features: MultiScaleFeatures, text: EncodedText) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns enhanced image tokens (B, N, dim) and enhanced text tokens (B, Nt, dim)."""
        origins = (self.layers[0].image_layer.self_attention.sampling_origins(encoder_reference_points(image_features))
                   if len(self.layers) else None)
        text_position = coordinate_position_embedding(
            text.position_ids[..., None].to(text.features.dtype), self.hidden_dim
        )
        text_padding_mask = ~text.token_mask
        image, text_features = image_features.features, text.features
        for layer in self.layers:
            image, text_features = layer.fusion(image, text_features, image_features.padding_mask, text_padding_mask)
            text_features = layer.text_layer(text_features, text_position, text.self_attention_mask)
            image = layer.image_layer(image, image_features, origins)
        return image, text_features
