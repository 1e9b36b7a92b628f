"""Box conversions and overlap measures against values worked out by hand."""
import pytest
import torch

from perception.boxes import (
    box_iou,
    cxcywh_to_xyxy,
    generalized_box_iou,
    paired_generalized_box_iou,
    xyxy_to_cxcywh,
)


def test_cxcywh_xyxy_round_trip_and_known_values():
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [10.0, 20.0, 4.0, 6.0]])
    xyxy = cxcywh_to_xyxy(cxcywh)
    torch.testing.assert_close(xyxy, torch.tensor([[0.4, 0.3, 0.6, 0.7], [8.0, 17.0, 12.0, 23.0]]))
    torch.testing.assert_close(xyxy_to_cxcywh(xyxy), cxcywh)
    batched = torch.rand(2, 3, 4)
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(batched)), batched)


def test_iou_and_giou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 6.0, 2.0]])
    # Half overlap: intersection 2, union 6; identical: 1; disjoint two apart: IoU 0, enclosing 12, union 8.
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 1.0, 0.0]]))
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([[1 / 3, 1.0, -1 / 3]]))


def test_paired_giou_is_the_diagonal_of_the_pairwise_matrix():
    first = cxcywh_to_xyxy(torch.rand(5, 4) * 0.5 + 0.1)
    second = cxcywh_to_xyxy(torch.rand(5, 4) * 0.5 + 0.1)
    torch.testing.assert_close(paired_generalized_box_iou(first, second), generalized_box_iou(first, second).diagonal())


def test_zero_area_boxes_give_finite_values():
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert torch.isfinite(generalized_box_iou(point, point)).all()
    assert box_iou(point, point).item() == 0.0


def test_bad_boxes_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="x1 >= x0"):
        box_iou(torch.tensor([[2.0, 0.0, 1.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        generalized_box_iou(torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="4 values"):
        cxcywh_to_xyxy(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="equal shapes"):
        paired_generalized_box_iou(torch.zeros(2, 4), torch.zeros(3, 4))
