"""Plain multi-head attention (text self-attention, decoder self- and text cross-attention)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.model.linear import Linear


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = Linear(dim, dim)
        self.key = Linear(dim, dim)
        self.value = Linear(dim, dim)
        self.output = Linear(dim, dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                allowed: torch.Tensor | None = None) -> torch.Tensor:
        """queries: (B, Lq, dim); keys, values: (B, Lk, dim).

        allowed: bool, broadcastable to (B, Lq, Lk), True = the query may attend to the key. Every
            query must be allowed at least one key.
        returns: (B, Lq, dim).
        """
        batch, num_queries, dim = queries.shape
        # (B, L, dim) -> (B, heads, L, head_dim)
        def split_heads(projected: torch.Tensor) -> torch.Tensor:
            return projected.view(batch, projected.shape[1], self.num_heads, -1).transpose(1, 2)

        mask = None if allowed is None else allowed.unsqueeze(-3)  # broadcast over heads
        attended = F.scaled_dot_product_attention(
            split_heads(self.query(queries)), split_heads(self.key(keys)), split_heads(self.value(values)),
            attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
        )
        return self.output(attended.transpose(1, 2).reshape(batch, num_queries, dim))
