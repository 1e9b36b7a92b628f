"""Box format conversions and overlap measures, in torch.

Formats: ``xyxy`` is (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1; ``cxcywh`` is (centre x, centre y,
width, height). Both hold in any unit (pixels, or normalized to [0, 1] by the image size) as long as
the two sides of a comparison use the same one. Boxes sit in the last dimension (size 4).
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check_last_dim(boxes: Tensor, name: str) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must have 4 values in the last dimension, got shape {tuple(boxes.shape)}")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cxcywh -> (..., 4) xyxy."""
    _check_last_dim(boxes, "boxes")
    centre_x, centre_y, width, height = boxes.unbind(-1)
    return torch.stack(
        (centre_x - 0.5 * width, centre_y - 0.5 * height, centre_x + 0.5 * width, centre_y + 0.5 * height), dim=-1
    )


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (..., 4) cxcywh."""
    _check_last_dim(boxes, "boxes")
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...) area."""
    _check_last_dim(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _check_xyxy(boxes: Tensor, name: str) -> None:
    _check_last_dim(boxes, name)
    if boxes.dim() != 2:
        raise ValueError(f"{name} must be a (N, 4) tensor, got shape {tuple(boxes.shape)}")
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    if (boxes[..., 2:] < boxes[..., :2]).any():
        raise ValueError(f"{name} must be xyxy with x1 >= x0 and y1 >= y0 (degenerate or cxcywh boxes given?)")


def _iou_giou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and generalized IoU of two broadcastable (..., 4) xyxy tensors."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area1 + area2 - intersection
    # Two zero-area boxes have no overlap to speak of: their IoU is 0, not 0/0.
    iou = intersection / union.clamp(min=torch.finfo(union.dtype).tiny)
    enclosing = (torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])).prod(-1)
    giou = iou - (enclosing - union) / enclosing.clamp(min=torch.finfo(enclosing.dtype).tiny)
    return iou, giou


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU: (N, 4) and (M, 4) xyxy -> (N, M) in [0, 1]."""
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    return _iou_giou(boxes1[:, None, :], boxes2[None, :, :])[0]


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019): (N, 4) and (M, 4) xyxy -> (N, M) in [-1, 1]."""
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    return _iou_giou(boxes1[:, None, :], boxes2[None, :, :])[1]


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of corresponding boxes: (N, 4) and (N, 4) xyxy -> (N,), without the N x M matrix."""
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    if boxes1.shape != boxes2.shape:
        raise ValueError(f"paired boxes must have equal shapes, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    return _iou_giou(boxes1, boxes2)[1]
