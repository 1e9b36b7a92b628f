"""Text backbone: BERT (built from its config through transformers, never downloaded here) with
sub-sentence masks, and the linear projection of its features to the detector's hidden size."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig, BertModel

from perception.model.config import GroundingDinoConfig
from perception.model.linear import Linear
from perception.model.sub_sentence_masks import sub_sentence_masks


@dataclass
class EncodedText:
    """Text features of one or more prompts, computed once and reused for every frame.

    features: (batch_text, length, hidden_dim), BERT output projected to hidden_dim.
    token_mask: (batch_text, length) bool, True = real token (False = padding).
    self_attention_mask: (batch_text, length, length) bool, True = may attend (sub-sentence mask).
    position_ids: (batch_text, length) int64, positions restarting at every phrase.
    input_ids: (batch_text, length) int64, the tokens, kept for labels.
    """

    features: torch.Tensor
    token_mask: torch.Tensor
    self_attention_mask: torch.Tensor
    position_ids: torch.Tensor
    input_ids: torch.Tensor

    def expand(self, batch: int) -> "EncodedText":
        """The same text for each of ``batch`` images (no copy)."""
        if self.features.shape[0] == batch:
            return self
        if self.features.shape[0] != 1:
            raise ValueError(f"text batch {self.features.shape[0]} does not match image batch {batch}")
        grow = lambda t: t.expand(batch, *t.shape[1:])  # noqa: E731
        return EncodedText(*(grow(t) for t in (self.features, self.token_mask, self.self_attention_mask,
                                               self.position_ids, self.input_ids)))


class TextEncoder(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        self.max_text_len = config.max_text_len
        self.bert = BertModel(BertConfig(**config.text.bert), add_pooling_layer=False)
        self.projection = Linear(self.bert.config.hidden_size, config.hidden_dim)

    def forward(self, input_ids: torch.Tensor, token_mask: torch.Tensor | None = None) -> EncodedText:
        """input_ids: (batch, length) int64, length <= max_text_len; token_mask: True = real token."""
        if input_ids.shape[1] > self.max_text_len:
            raise ValueError(f"text has {input_ids.shape[1]} tokens; the model takes at most {self.max_text_len}")
        if token_mask is None:
            token_mask = torch.ones_like(input_ids, dtype=torch.bool)
        self_attention_mask, position_ids = sub_sentence_masks(input_ids)
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=self_attention_mask[:, None],  # (batch, 1, length, length), True = attend
            token_type_ids=torch.zeros_like(input_ids),
            position_ids=position_ids,
        ).last_hidden_state
        return EncodedText(self.projection(hidden), token_mask.bool(), self_attention_mask, position_ids, input_ids)
