"""Hungarian matching of predicted queries to target boxes, one image at a time, as in DETR.

The cost of giving target j to query i is a weighted sum of
- classification: the focal-loss cost of calling the query positive minus that of calling it negative,
  averaged over the text tokens of the target's phrase (Grounding DINO's token-level version of
  Deformable DETR's focal cost);
- box L1 distance between normalized cxcywh boxes;
- negative generalized IoU of the boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from perception.boxes import cxcywh_to_xyxy, generalized_box_iou
from perception.training.targets import GroundingTarget


@dataclass(frozen=True)
class MatcherConfig:
    """Cost weights; the defaults are DINO's and MM-Grounding-DINO's."""

    class_cost: float = 2.0
    box_l1_cost: float = 5.0
    giou_cost: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def __post_init__(self) -> None:
        for name in ("class_cost", "box_l1_cost", "giou_cost", "focal_gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.class_cost == self.box_l1_cost == self.giou_cost == 0:
            raise ValueError("at least one of class_cost, box_l1_cost, giou_cost must be positive")
        if not 0 <= self.focal_alpha <= 1:
            raise ValueError(f"focal_alpha must be in [0, 1], got {self.focal_alpha}")


def _check_predictions(logits: Tensor, pred_boxes: Tensor, text_token_mask: Tensor, targets: Sequence) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be (batch, queries, text tokens), got {tuple(logits.shape)}")
    if pred_boxes.shape != (*logits.shape[:2], 4):
        raise ValueError(f"pred_boxes must be {(*logits.shape[:2], 4)} to match logits, got {tuple(pred_boxes.shape)}")
    if text_token_mask.shape != (logits.shape[0], logits.shape[2]) or text_token_mask.dtype != torch.bool:
        raise ValueError(
            f"text_token_mask must be bool {(logits.shape[0], logits.shape[2])}, got "
            f"{text_token_mask.dtype} {tuple(text_token_mask.shape)}"
        )
    if len(targets) != logits.shape[0]:
        raise ValueError(f"{len(targets)} targets for a batch of {logits.shape[0]} images")
    for target in targets:
        if target.positive_map.shape[1] != logits.shape[2]:
            raise ValueError(
                f"a target's positive_map has {target.positive_map.shape[1]} text tokens, the logits {logits.shape[2]}"
            )


class HungarianMatcher:
    """One-to-one assignment of queries to targets minimizing the total matching cost."""

    def __init__(self, config: MatcherConfig = MatcherConfig()) -> None:
        self.config = config

    def classification_cost(self, logits: Tensor, positive_map: Tensor) -> Tensor:
        """(Q, T) logits and (N, T) bool positive map -> (Q, N) cost, mean over each target's tokens."""
        alpha, gamma = self.config.focal_alpha, self.config.focal_gamma
        probability = logits.sigmoid()
        # -log(p) = softplus(-x) and -log(1 - p) = softplus(x), stable for large |x|.
        positive = alpha * (1 - probability) ** gamma * torch.nn.functional.softplus(-logits)
        negative = (1 - alpha) * probability**gamma * torch.nn.functional.softplus(logits)
        token_weights = positive_map.to(logits.dtype)
        token_weights = token_weights / token_weights.sum(dim=1, keepdim=True).clamp(min=1)
        return (positive - negative) @ token_weights.T

    @torch.no_grad()
    def __call__(
        self, logits: Tensor, pred_boxes: Tensor, text_token_mask: Tensor, targets: Sequence[GroundingTarget]
    ) -> list[tuple[Tensor, Tensor]]:
        """Match each image's queries to its targets.

        logits: (B, Q, T) raw query-token similarities; pred_boxes: (B, Q, 4) normalized cxcywh;
        text_token_mask: (B, T) bool, True = real token; targets: B GroundingTarget.
        Returns per image (query_indices, target_indices), int64 tensors of length min(Q, N): query
        query_indices[k] predicts target target_indices[k]. Images without targets get empty tensors.
        """
        _check_predictions(logits, pred_boxes, text_token_mask, targets)
        # Padding logits may be -inf; they meet no positive token, so any finite value serves.
        logits = logits.float().masked_fill(~text_token_mask[:, None, :], 0.0)
        matches = []
        for image_logits, image_boxes, target in zip(logits, pred_boxes.float(), targets):
            if len(target.boxes) == 0:
                empty = torch.zeros(0, dtype=torch.int64, device=logits.device)
                matches.append((empty, empty.clone()))
                continue
            target_boxes = target.boxes.to(image_boxes)
            cost = (
                self.config.class_cost * self.classification_cost(image_logits, target.positive_map)
                + self.config.box_l1_cost * torch.cdist(image_boxes, target_boxes, p=1)
                - self.config.giou_cost
                * generalized_box_iou(cxcywh_to_xyxy(image_boxes), cxcywh_to_xyxy(target_boxes))
            )
            if not torch.isfinite(cost).all():
                raise ValueError("matching cost is not finite: predictions hold NaN or infinite values")
            query_indices, target_indices = linear_sum_assignment(cost.cpu().numpy())
            matches.append(
                (torch.as_tensor(query_indices, dtype=torch.int64, device=logits.device),
                 torch.as_tensor(target_indices, dtype=torch.int64, device=logits.device))
            )
        return matches
