"""Grounding data files, prompts with negative phrases, and token-level targets with the real tokenizer."""
import json

import numpy as np
import pytest
import torch
from transformers import BertTokenizer

from perception.model.tokenizer import default_vocab_file
from perception.training.dataset import (
    GroundingFileDataset,
    GroundingRecord,
    SyntheticGroundingDataset,
    read_jsonl,
    write_jsonl,
    write_synthetic_dataset,
)
from perception.training.prompts import PromptConfig, build_prompt, sample_prompt, vocabulary_of
from perception.training.synthetic import SceneConfig, generate_scene
from perception.training.targets import build_target, token_map_from_offsets, token_map_from_spans
from tolerances import assert_within_ulps


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(vocab=str(default_vocab_file()))


def test_jsonl_round_trip(tmp_path):
    records = [
        GroundingRecord("a.png", 320, 240, ((1.0, 2.0, 30.0, 40.0), (5.5, 6.0, 7.0, 8.0)), ("red circle", "a mug")),
        GroundingRecord("b.png", 64, 64, (), ()),
    ]
    write_jsonl(tmp_path / "data.jsonl", records)
    assert read_jsonl(tmp_path / "data.jsonl") == records


def test_synthetic_files_read_back_pixel_exact(tmp_path):
    index = write_synthetic_dataset(tmp_path, [3, 4], (128, 160))
    dataset = GroundingFileDataset(index)
    assert len(dataset) == 2
    for position, seed in enumerate([3, 4]):
        scene, sample = generate_scene(seed, (128, 160)), dataset[position]
        assert np.array_equal(sample.image, scene.image)
        np.testing.assert_array_equal(sample.boxes, scene.boxes)
        assert sample.labels == scene.labels


def test_coco_file_reads_phrases_and_xyxy_boxes(tmp_path):
    image = generate_scene(0, (96, 128)).image
    import cv2

    cv2.imwrite(str(tmp_path / "img.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    coco = {
        "images": [{"id": 7, "file_name": "img.png", "width": 128, "height": 96}],
        "categories": [{"id": 1, "name": "blue star"}, {"id": 2, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 2, "bbox": [5, 6, 7, 8]},
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    sample = GroundingFileDataset(tmp_path / "instances.json")[0]
    np.testing.assert_array_equal(sample.boxes, [[10, 20, 40, 60], [5, 6, 12, 14]])
    assert sample.labels == ["blue star", "car"]


def test_bad_files_name_the_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "width": 10, "height": 10, "objects": []}\n{"image": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_jsonl(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="x0 <= x1"):
        GroundingRecord("a.png", 10, 10, ((5.0, 0.0, 1.0, 1.0),), ("red circle",))


def test_build_prompt_spans_point_at_the_phrases():
    prompt = build_prompt(["red circle", "blue square"])
    assert prompt.text == "red circle . blue square ."
    assert [prompt.text[start:end] for start, end in prompt.phrase_spans] == ["red circle", "blue square"]
    with pytest.raises(ValueError, match="without '.'"):
        build_prompt(["a. b"])
    with pytest.raises(ValueError, match="distinct"):
        build_prompt(["cat", "cat"])


def test_training_prompts_mix_present_and_absent_phrases():
    vocabulary = SceneConfig().phrases
    config = PromptConfig(min_negatives=2, max_negatives=6, hard_negative_fraction=1.0, drop_positive_probability=0.0)
    rng = np.random.default_rng(0)
    present = ["red circle", "blue car"]
    orders = set()
    for _ in range(30):
        prompt = sample_prompt(present, vocabulary, rng, config)
        negatives = [phrase for phrase in prompt.phrases if phrase not in present]
        assert set(present) <= set(prompt.phrases)
        assert 2 <= len(negatives) <= 6 and set(negatives) <= set(vocabulary)
        # Hard negatives share a word with a present phrase ("red ...", "... circle", "blue ...", "... car").
        assert all({"red", "circle", "blue", "car"} & set(phrase.split()) for phrase in negatives)
        orders.add(prompt.phrases.index("red circle"))
    assert len(orders) > 1  # phrases are shuffled


def test_dropped_positives_leave_a_prompt_of_absent_phrases():
    config = PromptConfig(min_negatives=0, max_negatives=0, drop_positive_probability=1.0)
    prompt = sample_prompt(["red circle"], ["red circle", "green star"], np.random.default_rng(1), config)
    assert prompt.phrases == ("green star",)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sample_prompt(["teal cube"], ["red circle"], np.random.default_rng(1))
    assert vocabulary_of([["b", "a"], ["a", "c"]]) == ["a", "b", "c"]


def test_some_training_prompts_name_only_absent_phrases():
    vocabulary = SceneConfig().phrases
    config = PromptConfig(min_negatives=2, max_negatives=4, drop_positive_probability=0.0, absent_only_probability=0.3)
    rng = np.random.default_rng(3)
    present = ["red circle", "blue car"]
    prompts = [sample_prompt(present, vocabulary, rng, config) for _ in range(400)]
    absent_only = [prompt for prompt in prompts if not set(present) & set(prompt.phrases)]
    assert 0.2 < len(absent_only) / len(prompts) < 0.4
    assert all(2 <= len(prompt.phrases) <= 4 for prompt in absent_only)
    assert all(set(present) <= set(prompt.phrases) for prompt in prompts if prompt not in absent_only)
    with pytest.raises(ValueError, match="absent_only_probability"):
        PromptConfig(absent_only_probability=1.5)


def test_attribute_negatives_name_a_present_kind_of_thing_with_other_attributes():
    vocabulary = SceneConfig().phrases
    present = ["red car", "blue circle"]
    rng = np.random.default_rng(5)
    config = PromptConfig(min_negatives=4, max_negatives=4, attribute_negative_fraction=1.0,
                          drop_positive_probability=0.0)
    for _ in range(50):
        negatives = [p for p in sample_prompt(present, vocabulary, rng, config).phrases if p not in present]
        assert len(negatives) == 4 and all(p.split()[-1] in {"car", "circle"} for p in negatives), negatives
    # With a share below one, the rest come from the other pools: both kinds appear.
    config = PromptConfig(min_negatives=4, max_negatives=4, attribute_negative_fraction=0.5)
    heads = [p.split()[-1] in {"car", "circle"} for _ in range(50)
             for p in sample_prompt(present, vocabulary, rng, config).phrases if p not in present]
    assert 0.3 < np.mean(heads) < 0.9
    with pytest.raises(ValueError, match="attribute_negative_fraction"):
        PromptConfig(attribute_negative_fraction=-0.1)


def test_targets_mark_the_tokens_of_each_box_phrase(tokenizer):
    scene = generate_scene(2, (200, 300))
    sample = SyntheticGroundingDataset(2, 1, (200, 300))[0]
    assert sample.labels == scene.labels
    phrases = list(dict.fromkeys(sample.labels)) + ["purple heart"]
    prompt = build_prompt([phrase for phrase in phrases if phrase != sample.labels[0]] + [sample.labels[0]])
    encoding = tokenizer([prompt.text, "a much longer prompt text . with more words than the first ."],
                         padding=True, return_offsets_mapping=True)
    offsets, ids = encoding["offset_mapping"][0], encoding["input_ids"][0]
    target = build_target(sample, prompt, token_map_from_offsets(prompt, offsets))
    assert target.positive_map.shape == (len(sample.labels), len(ids))
    for row, label in zip(target.positive_map, sample.labels):
        words = tokenizer.convert_ids_to_tokens([ids[t] for t in torch.nonzero(row).flatten().tolist()])
        assert " ".join(words) == label
    height, width = 200, 300
    x0, y0, x1, y1 = scene.objects[0].box
    expected = torch.tensor([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
    assert_within_ulps(target.boxes[0], expected, 2)  # a division and a sum in float32: under one ulp each
    # Spans give the same map as offsets: [CLS] red circle . -> tokens 1..2 of the first phrase.
    spans = [tuple(np.flatnonzero(row)[[0, -1]] + [0, 1]) for row in token_map_from_offsets(prompt, offsets)]
    np.testing.assert_array_equal(token_map_from_spans(spans, len(ids)), token_map_from_offsets(prompt, offsets))
    padded = target.padded(len(ids) + 5)
    assert padded.positive_map.shape[1] == len(ids) + 5 and not padded.positive_map[:, len(ids):].any()


def test_boxes_of_phrases_left_out_are_no_target_and_truncation_is_an_error(tokenizer):
    sample = SyntheticGroundingDataset(5, 1)[0]
    prompt = build_prompt(["teal cube"])
    offsets = tokenizer(prompt.text, return_offsets_mapping=True)["offset_mapping"]
    target = build_target(sample, prompt, token_map_from_offsets(prompt, offsets))
    assert target.boxes.shape == (0, 4) and target.positive_map.shape == (0, len(offsets))
    named = build_prompt([sample.labels[0], "purple heart"])
    # [CLS] <first word> [SEP]: the first phrase is cut in half, the second is gone.
    truncated = tokenizer(named.text, return_offsets_mapping=True, truncation=True, max_length=3)["offset_mapping"]
    with pytest.raises(ValueError, match="cut off"):
        token_map_from_offsets(named, truncated)
    with pytest.raises(ValueError, match="no text token"):
        build_target(sample, named, np.zeros((2, 3), bool))
