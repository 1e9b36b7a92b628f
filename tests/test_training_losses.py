"""Set losses: known values on hand-made predictions, every layer counted, finite gradients."""
import math

import pytest
import torch

from perception.model.grounding_dino import GroundingDinoOutput, LayerPrediction
from perception.training.losses import GroundingLoss, LossConfig, sigmoid_focal_loss
from perception.training.targets import GroundingTarget

ALPHA, GAMMA = 0.25, 2.0


def _focal(logit: float, positive: bool) -> float:
    """The focal loss of one element, written out from the paper."""
    p = 1 / (1 + math.exp(-logit))
    if positive:
        return -ALPHA * (1 - p) ** GAMMA * math.log(p)
    return -(1 - ALPHA) * p**GAMMA * math.log(1 - p)


def test_focal_loss_of_a_zero_logit():
    logits = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    loss = sigmoid_focal_loss(logits, targets, torch.ones(1, 2, dtype=torch.bool), ALPHA, GAMMA)
    # p = 0.5: 0.25 * 0.25 * ln 2 for the positive, 0.75 * 0.25 * ln 2 for the negative.
    assert loss.item() == pytest.approx(0.25 * math.log(2), rel=1e-6)


def _hand_made_case():
    """One image, two queries, three text tokens (the last one padding), one target named by tokens 0-1.

    Query 0 says the target's words and sits 0.1 to the left of the target; query 1 is elsewhere."""
    logits = torch.tensor([[[2.0, 1.0, float("-inf")], [-1.0, 0.5, float("-inf")]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05]]])
    mask = torch.tensor([[True, True, False]])
    target = GroundingTarget(torch.tensor([[0.6, 0.5, 0.2, 0.2]]), torch.tensor([[True, True, False]]))
    return logits, boxes, mask, target


def test_losses_of_a_hand_made_case():
    logits, boxes, mask, target = _hand_made_case()
    output = GroundingDinoOutput(logits=logits, boxes=boxes, text_token_mask=mask)
    losses = GroundingLoss()(output, [target])
    expected_class = _focal(2.0, True) + _focal(1.0, True) + _focal(-1.0, False) + _focal(0.5, False)
    assert losses["class"].item() == pytest.approx(expected_class, rel=1e-5)
    assert losses["l1"].item() == pytest.approx(0.1, rel=1e-5)
    # Boxes [0.4, 0.6] and [0.5, 0.7] wide, same rows: IoU = 0.02 / 0.06 and the hull is the union.
    assert losses["giou"].item() == pytest.approx(2 / 3, rel=1e-5)
    assert losses["loss"].item() == pytest.approx(1.0 * expected_class + 5.0 * 0.1 + 2.0 * 2 / 3, rel=1e-5)


def test_every_decoder_layer_and_the_proposals_add_their_losses():
    logits, boxes, mask, target = _hand_made_case()
    layer = LayerPrediction(logits, boxes)
    output = GroundingDinoOutput(logits=logits, boxes=boxes, text_token_mask=mask, auxiliary=[layer, layer], proposals=layer)
    config = LossConfig(class_weight=2.0, box_l1_weight=3.0, giou_weight=4.0)
    losses = GroundingLoss(config)(output, [target])
    suffixes = ["", "_layer0", "_layer1", "_encoder"]
    assert set(losses) == {f"{name}{suffix}" for name in ("class", "l1", "giou") for suffix in suffixes} | {"loss"}
    for suffix in suffixes[1:]:
        for name in ("class", "l1", "giou"):
            assert losses[name + suffix].item() == pytest.approx(losses[name].item())
    single = 2.0 * losses["class"] + 3.0 * losses["l1"] + 4.0 * losses["giou"]
    assert losses["loss"].item() == pytest.approx(4 * single.item(), rel=1e-6)


def test_losses_are_normalized_by_the_number_of_boxes():
    logits, boxes, mask, target = _hand_made_case()
    one = GroundingLoss()(GroundingDinoOutput(logits=logits, boxes=boxes, text_token_mask=mask), [target])
    two = GroundingLoss()(
        GroundingDinoOutput(logits=logits.repeat(2, 1, 1), boxes=boxes.repeat(2, 1, 1), text_token_mask=mask.repeat(2, 1)),
        [target, target],
    )
    for name in ("class", "l1", "giou", "loss"):
        assert two[name].item() == pytest.approx(one[name].item(), rel=1e-6)


def test_gradients_are_finite_with_padding_and_images_without_boxes():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, generator=generator)
    logits[:, :, 3] = float("-inf")
    logits.requires_grad_(True)
    raw_boxes = torch.randn(2, 5, 4, generator=generator, requires_grad=True)
    mask = torch.tensor([[True, True, True, False]] * 2)
    targets = [
        GroundingTarget(torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.1, 0.2]]), torch.tensor([[True, False, False, False], [False, True, True, False]])),
        GroundingTarget(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool)),
    ]
    output = GroundingDinoOutput(logits=logits, boxes=raw_boxes.sigmoid(), text_token_mask=mask)
    losses = GroundingLoss()(output, targets)
    losses["loss"].backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(raw_boxes.grad).all()
    assert (logits.grad[:, :, 3] == 0).all()  # padding tokens take no part
    assert raw_boxes.grad[0].abs().sum() > 0 and (raw_boxes.grad[1] == 0).all()  # no box in image 1


def test_a_batch_without_boxes_only_pushes_scores_down():
    logits = torch.zeros(1, 3, 2, requires_grad=True)
    output = GroundingDinoOutput(logits=logits, boxes=torch.full((1, 3, 4), 0.5), text_token_mask=torch.ones(1, 2, dtype=torch.bool))
    losses = GroundingLoss()(output, [GroundingTarget(torch.zeros(0, 4), torch.zeros(0, 2, dtype=torch.bool))])
    assert losses["l1"].item() == 0 and losses["giou"].item() == 0
    assert losses["class"].item() == pytest.approx(6 * _focal(0.0, False), rel=1e-6)
    losses["loss"].backward()
    assert (logits.grad > 0).all()


def test_hidden_box_weight_counts_a_partly_hidden_objects_box_losses_more():
    """The hand-made target at visibility 0.4 with hidden_box_weight 2: its L1 and GIoU losses count
    1 + 2 x 0.6 = 2.2 times; the class loss and a fully visible target are unchanged."""
    logits, boxes, mask, target = _hand_made_case()
    output = GroundingDinoOutput(logits=logits, boxes=boxes, text_token_mask=mask)
    hidden = GroundingTarget(target.boxes, target.positive_map, torch.tensor([0.4]))
    plain = GroundingLoss()(output, [hidden])
    weighted = GroundingLoss(LossConfig(hidden_box_weight=2.0))(output, [hidden])
    visible = GroundingLoss(LossConfig(hidden_box_weight=2.0))(output, [target])
    assert weighted["l1"].item() == pytest.approx(2.2 * plain["l1"].item(), rel=1e-6)
    assert weighted["giou"].item() == pytest.approx(2.2 * plain["giou"].item(), rel=1e-6)
    assert weighted["class"].item() == pytest.approx(plain["class"].item(), rel=1e-6)
    for name in ("class", "l1", "giou"):
        assert visible[name].item() == pytest.approx(plain[name].item(), rel=1e-6)
    with pytest.raises(ValueError, match="hidden_box_weight"):
        LossConfig(hidden_box_weight=-1.0)
    with pytest.raises(ValueError, match="visibility"):
        GroundingTarget(target.boxes, target.positive_map, torch.tensor([0.4, 0.5]))
