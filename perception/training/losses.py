"""Grounding DINO's training loss: after Hungarian matching, token-level contrastive classification with
sigmoid focal loss over the text tokens, plus L1 and generalized IoU box losses, on every decoder layer
and on the encoder proposals of query selection (auxiliary losses), each normalized by the number of
target boxes in the batch.

The model hands its predictions over as a ModelOutput (the contract between model and loss).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from perception.boxes import cxcywh_to_xyxy, paired_generalized_box_iou
from perception.training.matcher import HungarianMatcher, MatcherConfig
from perception.training.targets import GroundingTarget


class LayerOutput(Protocol):
    """One set of query predictions (one decoder layer, or the encoder proposals).

    logits: (B, Q, T) raw similarity of each query to each text token, before the sigmoid; values at
        padding tokens are ignored (they may be -inf).
    boxes: (B, Q, 4) normalized cxcywh in [0, 1].
    """

    logits: Tensor
    boxes: Tensor


class ModelOutput(LayerOutput, Protocol):
    """What the model returns for training (perception.model.grounding_dino.GroundingDinoOutput).

    logits, boxes: the last decoder layer's predictions, as in LayerOutput.
    auxiliary: the earlier decoder layers' predictions, first layer first (may be empty).
    proposals: the encoder's proposals chosen by query selection, or None.
    text_token_mask: (B, T) bool, True = real text token, False = padding.
    """

    text_token_mask: Tensor
    auxiliary: list[LayerOutput]
    proposals: LayerOutput | None


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (MM-Grounding-DINO's) and the focal loss shape."""

    class_weight: float = 1.0
    box_l1_weight: float = 5.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # Each matched box's L1 and GIoU losses count 1 + hidden_box_weight x (1 - its object's visibility) times.
    hidden_box_weight: float = 0.0
    matcher: MatcherConfig = field(default_factory=MatcherConfig)

    def __post_init__(self) -> None:
        for name in ("class_weight", "box_l1_weight", "giou_weight", "focal_gamma", "hidden_box_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.focal_alpha <= 1:
            raise ValueError(f"focal_alpha must be in [0, 1], got {self.focal_alpha}")


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, valid: Tensor, alpha: float, gamma: float) -> Tensor:
    """Sum of the focal loss (Lin et al. 2017) over the elements where `valid` is True.

    logits, targets: same shape, targets in {0, 1}; valid: bool, broadcastable to logits.
    """
    valid = valid.expand_as(logits)
    # Invalid elements may hold -inf; give them a finite stand-in so no NaN reaches the gradient.
    logits = torch.where(valid, logits, torch.zeros_like(logits))
    probability = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    probability_of_truth = probability * targets + (1 - probability) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    loss = weight * (1 - probability_of_truth) ** gamma * cross_entropy
    return (loss * valid).sum()


class GroundingLoss:
    """Matched set loss over all prediction sets of a ModelOutput."""

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        self.config = config
        self.matcher = HungarianMatcher(config.matcher)

    def set_losses(
        self, predictions: LayerOutput, text_token_mask: Tensor, targets: Sequence[GroundingTarget], num_boxes: float
    ) -> dict[str, Tensor]:
        """Unweighted "class", "l1" and "giou" losses of one prediction set, each divided by num_boxes."""
        logits, pred_boxes = predictions.logits, predictions.boxes
        matches = self.matcher(logits, pred_boxes, text_token_mask, targets)
        batch_index = torch.cat([torch.full_like(queries, image) for image, (queries, _) in enumerate(matches)])
        query_index = torch.cat([queries for queries, _ in matches])
        token_targets = torch.zeros_like(logits)
        token_targets[batch_index, query_index] = torch.cat(
            [target.positive_map[chosen] for target, (_, chosen) in zip(targets, matches)]
        ).to(logits)
        class_loss = sigmoid_focal_loss(
            logits, token_targets, text_token_mask[:, None, :], self.config.focal_alpha, self.config.focal_gamma
        )
        matched_boxes = pred_boxes[batch_index, query_index]
        target_boxes = torch.cat([target.boxes[chosen] for target, (_, chosen) in zip(targets, matches)]).to(pred_boxes)
        visibility = torch.cat([target.visibility[chosen] for target, (_, chosen) in zip(targets, matches)])
        box_weights = 1 + self.config.hidden_box_weight * (1 - visibility.to(pred_boxes))
        l1_loss = ((matched_boxes - target_boxes).abs().sum(-1) * box_weights).sum()
        giou = paired_generalized_box_iou(cxcywh_to_xyxy(matched_boxes), cxcywh_to_xyxy(target_boxes))
        return {"class": class_loss / num_boxes, "l1": l1_loss / num_boxes,
                "giou": ((1 - giou) * box_weights).sum() / num_boxes}

    def __call__(self, predictions: ModelOutput, targets: Sequence[GroundingTarget]) -> dict[str, Tensor]:
        """Losses by name: "class", "l1", "giou" of the last decoder layer, the same with suffix
        "_layer{i}" for the earlier (auxiliary) layers and "_encoder" for the proposals, and "loss",
        the weighted sum of all of them (the one to back-propagate)."""
        # Normalizing by the batch's box count (at least 1) keeps images without boxes from dividing by 0.
        num_boxes = float(max(sum(len(target.boxes) for target in targets), 1))
        named_sets: list[tuple[str, LayerOutput]] = [(f"_layer{i}", layer) for i, layer in enumerate(predictions.auxiliary)]
        named_sets.append(("", predictions))
        if predictions.proposals is not None:
            named_sets.append(("_encoder", predictions.proposals))
        weights = {"class": self.config.class_weight, "l1": self.config.box_l1_weight, "giou": self.config.giou_weight}
        losses: dict[str, Tensor] = {}
        total = predictions.logits.new_zeros(())
        for suffix, prediction_set in named_sets:
            for name, value in self.set_losses(prediction_set, predictions.text_token_mask, targets, num_boxes).items():
                losses[name + suffix] = value
                total = total + weights[name] * value
        losses["loss"] = total
        return losses
