"""Hungarian matcher: known assignments, invariance to the order of queries and targets, empty targets."""
import pytest
import torch

from perception.training.matcher import HungarianMatcher, MatcherConfig
from perception.training.targets import GroundingTarget


def _target(boxes, positive_map) -> GroundingTarget:
    return GroundingTarget(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(positive_map).reshape(len(boxes), -1))


def _random_case(generator, queries=7, targets=4, tokens=6):
    logits = torch.randn(1, queries, tokens, generator=generator)
    boxes = torch.rand(1, queries, 4, generator=generator) * 0.4 + 0.2
    target_boxes = torch.rand(targets, 4, generator=generator) * 0.4 + 0.2
    positive_map = torch.zeros(targets, tokens, dtype=torch.bool)
    for index in range(targets):
        positive_map[index, index % (tokens - 1) : index % (tokens - 1) + 2] = True
    return logits, boxes, GroundingTarget(target_boxes, positive_map)


def test_each_target_goes_to_the_query_that_predicts_it():
    # Query 2 sits on target 0 and says its tokens; query 0 on target 1; query 1 is elsewhere.
    logits = torch.tensor([[[-4.0, -4.0, 4.0], [-4.0, -4.0, -4.0], [4.0, 4.0, -4.0]]])
    boxes = torch.tensor([[[0.7, 0.7, 0.2, 0.2], [0.1, 0.9, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2]]])
    target = _target([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]], [[True, True, False], [False, False, True]])
    [(queries, targets)] = HungarianMatcher()(logits, boxes, torch.ones(1, 3, dtype=torch.bool), [target])
    assert dict(zip(targets.tolist(), queries.tolist())) == {0: 2, 1: 0}


def test_matching_does_not_depend_on_the_order_of_targets_or_queries():
    generator = torch.Generator().manual_seed(0)
    matcher = HungarianMatcher()
    for _ in range(5):
        logits, boxes, target = _random_case(generator)
        mask = torch.ones(1, logits.shape[2], dtype=torch.bool)
        [(queries, targets)] = matcher(logits, boxes, mask, [target])
        pairs = set(zip(queries.tolist(), targets.tolist()))
        assert len(pairs) == len(target.boxes)

        order = torch.randperm(len(target.boxes), generator=generator)
        shuffled = GroundingTarget(target.boxes[order], target.positive_map[order])
        [(queries, targets)] = matcher(logits, boxes, mask, [shuffled])
        assert set(zip(queries.tolist(), order[targets].tolist())) == pairs

        query_order = torch.randperm(logits.shape[1], generator=generator)
        [(queries, targets)] = matcher(logits[:, query_order], boxes[:, query_order], mask, [target])
        assert set(zip(query_order[queries].tolist(), targets.tolist())) == pairs


def test_batched_matching_equals_matching_each_image_alone_and_handles_empty_targets():
    generator = torch.Generator().manual_seed(1)
    first, second = _random_case(generator), _random_case(generator, targets=2)
    empty = GroundingTarget(torch.zeros(0, 4), torch.zeros(0, 6, dtype=torch.bool))
    logits = torch.cat([first[0], torch.randn(1, 7, 6, generator=generator), second[0]])
    boxes = torch.cat([first[1], torch.rand(1, 7, 4, generator=generator) * 0.5 + 0.2, second[1]])
    mask = torch.ones(3, 6, dtype=torch.bool)
    matcher = HungarianMatcher()
    matches = matcher(logits, boxes, mask, [first[2], empty, second[2]])
    assert matches[1][0].numel() == 0 and matches[1][1].numel() == 0 and matches[1][0].dtype == torch.int64
    for image, case in ((0, first), (2, second)):
        [alone] = matcher(case[0], case[1], mask[:1], [case[2]])
        assert torch.equal(matches[image][0], alone[0]) and torch.equal(matches[image][1], alone[1])


def test_padding_logits_may_be_minus_infinity():
    generator = torch.Generator().manual_seed(2)
    logits, boxes, target = _random_case(generator)
    mask = torch.ones(1, 6, dtype=torch.bool)
    mask[0, 5] = False
    target.positive_map[:, 5] = False
    reference = HungarianMatcher()(logits, boxes, mask, [target])
    logits[0, :, 5] = float("-inf")
    [(queries, targets)] = HungarianMatcher()(logits, boxes, mask, [target])
    assert torch.equal(queries, reference[0][0]) and torch.equal(targets, reference[0][1])


def test_bad_inputs_are_refused_with_a_reason():
    generator = torch.Generator().manual_seed(3)
    logits, boxes, target = _random_case(generator)
    mask = torch.ones(1, 6, dtype=torch.bool)
    matcher = HungarianMatcher()
    with pytest.raises(ValueError, match="text tokens"):
        matcher(logits[..., :5], boxes, mask[:, :5], [target])
    with pytest.raises(ValueError, match="2 images|targets for a batch"):
        matcher(logits, boxes, mask, [target, target])
    with pytest.raises(ValueError, match="pred_boxes"):
        matcher(logits, boxes[:, :3], mask, [target])
    boxes[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        matcher(logits, boxes, mask, [target])
    with pytest.raises(ValueError, match="focal_alpha"):
        MatcherConfig(focal_alpha=1.5)
