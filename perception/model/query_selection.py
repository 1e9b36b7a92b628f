"""Language-guided query selection (Grounding DINO, section 3.2).

Every enhanced image token proposes a box around itself; the K tokens whose best similarity to any text
token is highest become the decoder's anchors (positional queries), while the content queries are
learned embeddings (mixed query selection, as in DINO).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from perception.model.backbone import MultiScaleFeatures
from perception.model.config import GroundingDinoConfig
from perception.model.heads import ContrastiveClassifier, box_head
from perception.model.linear import Linear

# Proposal size at level l is BASE_PROPOSAL_SIZE * 2**l (normalized), one square box per token.
BASE_PROPOSAL_SIZE = 0.05
# Proposals whose coordinates leave (margin, 1 - margin) are discarded.
PROPOSAL_MARGIN = 0.01


@dataclass
class SelectedQueries:
    """content: (B, K, dim) decoder input; reference_boxes: (B, K, 4) float32 normalized cxcywh anchors
    (detached). logits: (B, K, Nt) and boxes: (B, K, 4) float32 cxcywh of the selected proposals, for the
    encoder loss."""

    content: torch.Tensor
    reference_boxes: torch.Tensor
    logits: torch.Tensor
    boxes: torch.Tensor


def token_proposals(image_features: MultiScaleFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """One box per image token in logit space, and which proposals are usable.

    returns: proposals (B, N, 4) float32 inverse-sigmoid cxcywh (inf where unusable), usable (B, N, 1) bool.
    Float32 whatever the features' dtype: a centre (x + 0.5) / width near 1 has no logit in half precision.
    """
    padding = image_features.padding_mask
    batch = padding.shape[0]
    proposals, start = [], 0
    for level, (height, width) in enumerate(image_features.spatial_shapes_list):
        valid = ~padding[:, start : start + height * width].view(batch, height, width)
        valid_height, valid_width = valid[:, :, 0].sum(1), valid[:, 0, :].sum(1)
        ys, xs = torch.meshgrid(
            torch.linspace(0, height - 1, height, dtype=torch.float32, device=padding.device),
            torch.linspace(0, width - 1, width, dtype=torch.float32, device=padding.device),
            indexing="ij",
        )
        scale = torch.stack([valid_width, valid_height], -1).view(batch, 1, 1, 2)
        centers = (torch.stack([xs, ys], -1)[None] + 0.5) / scale
        sizes = torch.full_like(centers, BASE_PROPOSAL_SIZE * 2.0**level)
        proposals.append(torch.cat((centers, sizes), -1).view(batch, -1, 4))
        start += height * width
    proposals = torch.cat(proposals, 1)
    usable = ((proposals > PROPOSAL_MARGIN) & (proposals < 1 - PROPOSAL_MARGIN)).all(-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals))
    proposals = proposals.masked_fill(padding[..., None] | ~usable, float("inf"))
    return proposals, usable & ~padding[..., None]


class QuerySelection(nn.Module):
    def __init__(self, config: GroundingDinoConfig) -> None:
        super().__init__()
        self.num_queries = config.num_queries
        self.output_projection = Linear(config.hidden_dim, config.hidden_dim)
        self.output_norm = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
        self.box_head = box_head(config.hidden_dim)
        self.class_head = ContrastiveClassifier(config.contrastive_bias)
        self.content_queries = nn.Embedding(config.num_queries, config.hidden_dim)

    def forward(self, image_features: MultiScaleFeatures, image_tokens: torch.Tensor, text_tokens: torch.Tensor,
                text_token_mask: torch.Tensor) -> SelectedQueries:
        """image_tokens: (B, N, dim) enhanced; text_tokens: (B, Nt, dim) enhanced; text_token_mask True = real."""
        proposals, usable = token_proposals(image_features)
        token_queries = self.output_norm(self.output_projection(image_tokens.masked_fill(~usable, 0.0)))
        logits = self.class_head(token_queries, text_tokens, text_token_mask)  # (B, N, Nt)
        box_logits = self.box_head(token_queries).float() + proposals  # (B, N, 4) float32, as the decoder's boxes
        if self.num_queries > logits.shape[1]:
            raise ValueError(
                f"the image gives {logits.shape[1]} tokens, fewer than the {self.num_queries} queries to select: "
                "use a larger image"
            )
        top = logits.max(-1).values.topk(self.num_queries, dim=1).indices  # (B, K)
        gather = lambda t: torch.gather(t, 1, top[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
        reference_boxes = gather(box_logits).detach().sigmoid()
        content = self.content_queries.weight[None].expand(image_tokens.shape[0], -1, -1)
        return SelectedQueries(content, reference_boxes, gather(logits), gather(box_logits).sigmoid())
