"""Cross-modality decoder (Grounding DINO, section 3.3): each layer runs query self-attention, text
cross-attention, deformable image cross-attention and an FFN, then refines every query's box."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from perception.model.attention import MultiHeadAttention
from perception.model.backbone import MultiScaleFeatures
from perception.model.config import GroundingDinoConfig
from perception.model.deformable_attention import MultiScaleDeformableAttention
from perception.model.feature_enhancer import FeedForward
from perception.model.heads import MLP, box_head
from perception.model.position_encoding import coordinate_position_embedding

# Boxes are refined in logit space; probabilities are clipped to [eps, 1 - eps] before the logit. Always in
# float32, whatever the model's dtype: 1 - 1e-5 is 1.0 in float16 and bfloat16 (logit +inf), and a box
# held in bfloat16 moves in steps of 2**-8 of the image (5 px at 1333).
LOGIT_EPS = 1e-5


def refine_boxes(update: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """update: (..., 4) predicted change in logit space (any float dtype); boxes: (..., 4) float32 cxcywh in
    [0, 1]. returns: the refined (..., 4) float32 boxes."""
    return (update.float() + torch.special.logit(boxes, eps=LOGIT_EPS)).sigmoid()


@dataclass
class DecoderOutput:
    """hidden_states: per layer (B, K, dim), after the shared output norm.
    reference_boxes: per layer the (B, K, 4) float32 cxcywh boxes each layer's queries started from."""

    hidden_states: list[torch.Tensor]
    reference_boxes: list[torch.Tensor]


class DecoderLayer(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        dim, eps = config.hidden_dim, config.layer_norm_eps
        self.dropout = config.dropout
        self.self_attention = MultiHeadAttention(dim, config.decoder_heads)
        self.self_attention_norm = nn.LayerNorm(dim, eps=eps)
        self.text_cross_attention = MultiHeadAttention(dim, config.decoder_heads)
        self.text_cross_attention_norm = nn.LayerNorm(dim, eps=eps)
        self.image_cross_attention = MultiScaleDeformableAttention(
            dim, config.decoder_heads, config.num_feature_levels, config.decoder_points
        )
        self.image_cross_attention_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = FeedForward(dim, config.decoder_ffn_dim, config.dropout, eps)

    def _residual(self, queries: torch.Tensor, update: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(queries + F.dropout(update, self.dropout, self.training))

    def forward(self, queries, query_position, reference_boxes, image_tokens, image_features: MultiScaleFeatures,
                text_tokens, text_allowed):
        positioned = queries + query_position
        queries = self._residual(queries, self.self_attention(positioned, positioned, queries), self.self_attention_norm)
        text_update = self.text_cross_attention(queries + query_position, text_tokens, text_tokens, text_allowed)
        queries = self._residual(queries, text_update, self.text_cross_attention_norm)
        image_update = self.image_cross_attention(
            queries + query_position, reference_boxes, image_tokens, image_features.padding_mask,
            image_features.spatial_shapes, image_features.level_start_index,
        )
        queries = self._residual(queries, image_update, self.image_cross_attention_norm)
        return self.ffn(queries)


class CrossModalityDecoder(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        self.hidden_dim = config.hidden_dim
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.output_norm = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
        # Positional query from the sine embedding of the 4 box coordinates (4 * dim/2 features).
        self.query_position_head = MLP(2 * config.hidden_dim, config.hidden_dim, config.hidden_dim, 2)
        shared = box_head(config.hidden_dim) if config.share_box_head else None
        self.box_heads = nn.ModuleList(
            shared if shared is not None else box_head(config.hidden_dim) for _ in range(config.decoder_layers)
        )

    def forward(self, content: torch.Tensor, reference_boxes: torch.Tensor, image_tokens: torch.Tensor,
                image_features: MultiScaleFeatures, text_tokens: torch.Tensor,
                text_token_mask: torch.Tensor) -> DecoderOutput:
        """content: (B, K, dim); reference_boxes: (B, K, 4) float32 cxcywh in [0, 1] of the padded image.
        The boxes stay float32 from layer to layer (see LOGIT_EPS) and are sampled around in float32."""
        ratios = torch.cat([image_features.valid_ratios, image_features.valid_ratios], -1)  # (B, levels, 4)
        text_allowed = text_token_mask[:, None, :]  # (B, 1, Nt): every query may attend to every real token
        queries, hidden_states, starts = content, [], []
        for layer, box_refiner in zip(self.layers, self.box_heads):
            boxes_per_level = reference_boxes[:, :, None] * ratios[:, None]  # (B, K, levels, 4) float32
            query_position = self.query_position_head(
                coordinate_position_embedding(boxes_per_level[:, :, 0], self.hidden_dim // 2).to(queries.dtype)
            )
            queries = layer(queries, query_position, boxes_per_level, image_tokens, image_features,
                            text_tokens, text_allowed)
            starts.append(reference_boxes)
            reference_boxes = refine_boxes(box_refiner(queries), reference_boxes).detach()
            hidden_states.append(self.output_norm(queries))
        return DecoderOutput(hidden_states, starts)
