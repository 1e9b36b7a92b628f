"""Prediction heads: the box MLP and the contrastive (query-token similarity) classifier."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from perception.model.linear import Linear


class MLP(nn.Module):
    """Linear layers with ReLU between them (not after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:]))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            inputs = layer(inputs) if index == len(self.layers) - 1 else F.relu(layer(inputs))
        return inputs


def box_head(dim: int) -> MLP:
    """Predicts a (cx, cy, w, h) update in logit space from a query: 3 layers, as published."""
    return MLP(dim, dim, 4, 3)


class ContrastiveClassifier(nn.Module):
    """Class logits as the similarity of each query to each text token.

    With ``learned_bias`` (MM-Grounding-DINO) the similarity is scaled by 1/sqrt(dim) and a learned
    scalar bias is added, which keeps initial probabilities near a prior.
    """

    def __init__(self, learned_bias: bool) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(-math.log((1 - 0.01) / 0.01))) if learned_bias else None

    def forward(self, queries: torch.Tensor, text: torch.Tensor, text_token_mask: torch.Tensor) -> torch.Tensor:
        """queries: (B, Q, dim); text: (B, Nt, dim); text_token_mask: (B, Nt) True = real token.

        returns: (B, Q, Nt) float32 logits, -inf at padding tokens. Float32 whatever the inputs' dtype: a
        dot product of two 256-wide features can pass float16's 65504, and bfloat16 would round every logit
        to 8 significant bits; the product is small (queries x Nt) next to the layers before it.
        """
        logits = queries.float() @ text.float().transpose(-1, -2)
        if self.bias is not None:
            logits = logits / math.sqrt(queries.shape[-1]) + self.bias.float()
        return logits.masked_fill(~text_token_mask[:, None, :], float("-inf"))
