"""Grounding DINO (Liu et al., 2023): open-set detection of whatever a sentence names.

The forward pass is stateless: text is encoded by :meth:`GroundingDino.encode_text` and passed in, so a
caller can encode a prompt once and reuse it for every frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from perception.model.backbone import ImageBackbone, MultiScaleFeatures
from perception.model.config import GroundingDinoConfig
from perception.model.decoder import CrossModalityDecoder, refine_boxes
from perception.model.feature_enhancer import FeatureEnhancer
from perception.model.heads import ContrastiveClassifier
from perception.model.query_selection import QuerySelection
from perception.model.text_encoder import EncodedText, TextEncoder
from perception.ops.dispatch import IMPLEMENTATIONS


@dataclass
class LayerPrediction:
    """logits: (B, K, Nt) query-token similarity (-inf at padding tokens); boxes: (B, K, 4) normalized
    cxcywh relative to the padded input image. Both float32 whatever the model's dtype (see
    ContrastiveClassifier and perception.model.decoder.LOGIT_EPS)."""

    logits: torch.Tensor
    boxes: torch.Tensor


@dataclass
class GroundingDinoOutput:
    """logits, boxes: the last decoder layer's predictions (see LayerPrediction).
    auxiliary: earlier decoder layers' predictions (only with ``return_auxiliary``), first layer first.
    proposals: the selected encoder proposals (only with ``return_auxiliary``), for the encoder loss.
    text_token_mask: (B, Nt) True = real token."""

    logits: torch.Tensor
    boxes: torch.Tensor
    text_token_mask: torch.Tensor
    auxiliary: list[LayerPrediction] = field(default_factory=list)
    proposals: LayerPrediction | None = None


class GroundingDino(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        self.config = config
        self.image_backbone = ImageBackbone(config)
        self.text_encoder = TextEncoder(config)
        self.feature_enhancer = FeatureEnhancer(config)
        self.query_selection = QuerySelection(config)
        self.decoder = CrossModalityDecoder(config)
        shared = ContrastiveClassifier(config.contrastive_bias) if config.share_class_head else None
        self.class_heads = nn.ModuleList(
            shared if shared is not None else ContrastiveClassifier(config.contrastive_bias)
            for _ in range(config.decoder_layers)
        )

    def set_attention_implementation(self, implementation: str) -> None:
        """Choose the deformable-attention implementation of every layer: auto | cuda | cpu | pytorch."""
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        for module in self.modules():
            if hasattr(module, "implementation"):
                module.implementation = implementation

    def text_side_steps(self) -> list[nn.Module]:
        """The modules of the text-dependent part (after :meth:`encode_image`), in order, at whose start a
        caller may abandon a forward pass (from a forward pre-hook) and lose nothing but the time spent: the
        pass is stateless. Used to restart a batch's text side when the prompt changes under it."""
        steps: list[nn.Module] = []
        for layer in self.feature_enhancer.layers:
            steps += [layer.fusion, layer.text_layer, layer.image_layer]
        return [*steps, self.query_selection, *self.decoder.layers]

    def encode_text(self, input_ids: torch.Tensor, token_mask: torch.Tensor | None = None) -> EncodedText:
        """input_ids: (batch_text, length) tokens of ``[CLS] phrase . phrase . [SEP]``; see EncodedText."""
        return self.text_encoder(input_ids, token_mask)

    def encode_image(self, pixel_values: torch.Tensor, image_padding_mask: torch.Tensor) -> MultiScaleFeatures:
        """The text-independent part: Swin and the per-level input projections, once per frame batch.

        pixel_values: (B, 3, H, W) ImageNet-normalized, images at the top-left of a padded batch.
        image_padding_mask: (B, H, W) bool, True = padding. The result is only read by :meth:`forward`, so
        one encoding serves every chunk of a long prompt.
        """
        return self.image_backbone(pixel_values, image_padding_mask)

    def forward(self, pixel_values: torch.Tensor, image_padding_mask: torch.Tensor, text: EncodedText,
                return_auxiliary: bool = False,
                image_features: MultiScaleFeatures | None = None) -> GroundingDinoOutput:
        """pixel_values, image_padding_mask: see :meth:`encode_image`. text: one prompt for all images or one
        per image. image_features: :meth:`encode_image` of these pixels, computed once for several prompts'
        chunks; None computes it here.
        """
        text = text.expand(pixel_values.shape[0])
        if image_features is None:
            image_features = self.encode_image(pixel_values, image_padding_mask)
        image_tokens, text_tokens = self.feature_enhancer(image_features, text)
        selected = self.query_selection(image_features, image_tokens, text_tokens, text.token_mask)
        decoded = self.decoder(selected.content, selected.reference_boxes, image_tokens, image_features,
                               text_tokens, text.token_mask)
        layers = range(len(decoded.hidden_states)) if return_auxiliary else [len(decoded.hidden_states) - 1]
        predictions = [self._predict(decoded, index, text_tokens, text.token_mask) for index in layers]
        return GroundingDinoOutput(
            logits=predictions[-1].logits,
            boxes=predictions[-1].boxes,
            text_token_mask=text.token_mask,
            auxiliary=predictions[:-1],
            proposals=LayerPrediction(selected.logits, selected.boxes) if return_auxiliary else None,
        )

    def _predict(self, decoded, layer: int, text_tokens, text_token_mask) -> LayerPrediction:
        queries = decoded.hidden_states[layer]
        boxes = refine_boxes(self.decoder.box_heads[layer](queries), decoded.reference_boxes[layer])
        return LayerPrediction(self.class_heads[layer](queries, text_tokens, text_token_mask), boxes)
