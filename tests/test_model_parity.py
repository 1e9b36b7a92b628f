"""Our Grounding DINO against transformers' on identical weights and inputs."""
from __future__ import annotations

import pytest
import torch
from reference_models import full_size_reference, reference_query_ranking, small_reference
from tolerances import FULL_SIZE_ULPS, MODEL_ULPS, assert_within_ulps
from transformers import BertTokenizer, GroundingDinoImageProcessorPil, GroundingDinoProcessor

from perception.model import linear as linear_module
from perception.model.tokenizer import PromptTokenizer, default_vocab_file
from perception.postprocess import PostprocessConfig, postprocess

ONE_PHRASE = "a person ."
FIVE_PHRASES = "a person . a red mug . traffic cone . dog . a very small bicycle ."
pytestmark = pytest.mark.numeric


@pytest.fixture(scope="module")
def tokenizer():
    return PromptTokenizer.from_vocab_file(None, 256)


@pytest.fixture(scope="module", params=["grounding-dino", "mm-grounding-dino"])
def models(request):
    return small_reference(request.param)


def run_both(reference, ours, pixel_values, valid_mask, input_ids, ulps=MODEL_ULPS):
    with torch.no_grad():
        expected = reference(pixel_values=pixel_values, input_ids=input_ids.expand(len(pixel_values), -1),
                             pixel_mask=valid_mask.long())
        with reference_query_ranking(ours, expected.enc_outputs_class[..., : input_ids.shape[1]], ulps):
            actual = ours(pixel_values, ~valid_mask, ours.encode_text(input_ids))
    return expected, actual


def assert_close(expected, actual, num_tokens, ulps=MODEL_ULPS):
    logits = expected.logits[..., :num_tokens]
    finite = torch.isfinite(logits)
    assert torch.equal(finite, torch.isfinite(actual.logits))
    assert_within_ulps(actual.logits[finite], logits[finite], ulps)
    assert_within_ulps(actual.boxes, expected.pred_boxes, ulps)  # normalized cxcywh


@pytest.mark.parametrize("prompt", [ONE_PHRASE, FIVE_PHRASES])
@pytest.mark.parametrize("size", [(128, 128), (150, 211)])
def test_single_image_matches_transformers(models, tokenizer, prompt, size):
    reference, ours = models
    (chunk,) = tokenizer.chunk_prompt(prompt)
    pixel_values = torch.randn(1, 3, *size)
    expected, actual = run_both(reference, ours, pixel_values, torch.ones(1, *size, dtype=torch.bool), chunk.input_ids)
    assert_close(expected, actual, chunk.input_ids.shape[1])


def test_padded_batch_of_two_sizes_matches_transformers(models, tokenizer):
    reference, ours = models
    (chunk,) = tokenizer.chunk_prompt(FIVE_PHRASES)
    pixel_values = torch.randn(2, 3, 160, 224)
    valid = torch.ones(2, 160, 224, dtype=torch.bool)
    valid[1, 120:, :] = False
    valid[1, :, 150:] = False
    pixel_values[1][~valid[1].expand(3, -1, -1)] = 0.0
    expected, actual = run_both(reference, ours, pixel_values, valid, chunk.input_ids)
    assert_close(expected, actual, chunk.input_ids.shape[1])


def test_mlps_in_row_chunks_match_transformers(models, tokenizer, monkeypatch):
    """Swin's MLPs and the feature enhancer's and decoder's FFNs as CPU inference runs them on large images, in
    row chunks (`linear.mlp`), forced here on a small one: still transformers' numbers."""
    reference, ours = models
    monkeypatch.setattr(linear_module, "MLP_CHUNKING_ABOVE_BYTES", 0)
    monkeypatch.setattr(linear_module, "MLP_CHUNK_BYTES", 40_000)  # a few dozen rows per chunk
    rows = []
    original = linear_module.linear
    monkeypatch.setattr(linear_module, "linear", lambda x, *args: rows.append(x.shape[0]) or original(x, *args))
    (chunk,) = tokenizer.chunk_prompt(FIVE_PHRASES)
    pixel_values = torch.randn(1, 3, 150, 211)
    expected, actual = run_both(reference, ours, pixel_values, torch.ones(1, 150, 211, dtype=torch.bool),
                                chunk.input_ids)
    assert_close(expected, actual, chunk.input_ids.shape[1])
    assert len(rows) > 4 * sum(ours.config.backbone.depths) and max(rows) < 1000  # many chunks, none whole


def test_our_tokens_are_the_reference_tokenizers():
    reference_tokenizer = BertTokenizer(vocab=str(default_vocab_file()))
    ours = PromptTokenizer.from_vocab_file(None, 256)
    caption = "a person. a red mug. traffic cone. dog. a very small bicycle."
    (chunk,) = ours.chunk_prompt(FIVE_PHRASES)
    assert chunk.input_ids[0].tolist() == reference_tokenizer(caption)["input_ids"]


def test_detections_equal_transformers_post_processing(models, tokenizer):
    reference, ours = models
    (chunk,) = tokenizer.chunk_prompt(FIVE_PHRASES)
    sizes = [(480, 640), (375, 500)]
    pixel_values = torch.randn(2, 3, 128, 171)
    expected, actual = run_both(reference, ours, pixel_values, torch.ones(2, 128, 171, dtype=torch.bool),
                                chunk.input_ids)
    processor = GroundingDinoProcessor(GroundingDinoImageProcessorPil(),
                                       BertTokenizer(vocab=str(default_vocab_file())))
    expected.input_ids = chunk.input_ids.expand(2, -1)
    # Random weights give arbitrary score ranges: thresholds at quantiles keep some boxes and some tokens.
    probabilities = expected.logits[..., : chunk.input_ids.shape[1]].sigmoid()
    box_threshold = float(probabilities.amax(-1).quantile(0.7))
    text_threshold = float(probabilities.quantile(0.8))
    reference_results = processor.post_process_grounded_object_detection(
        expected, threshold=box_threshold, text_threshold=text_threshold, target_sizes=sizes)
    config = PostprocessConfig(box_threshold=box_threshold, text_threshold=text_threshold, label_mode="tokens",
                               clip_to_image=False, max_detections=1000)
    for index, reference_result in enumerate(reference_results):
        ours_result = postprocess(actual.logits[index], actual.boxes[index], chunk, sizes[index], config, tokenizer)
        assert len(ours_result) == len(reference_result["scores"]) > 0
        order = reference_result["scores"].argsort(descending=True, stable=True)
        assert_within_ulps(ours_result.scores, reference_result["scores"][order], MODEL_ULPS)
        assert_within_ulps(ours_result.boxes, reference_result["boxes"][order], MODEL_ULPS)  # pixels
        assert ours_result.labels == [reference_result["text_labels"][i] for i in order.tolist()]
        assert any(ours_result.labels)


@pytest.mark.slow
def test_full_size_grounding_dino_t_matches_transformers(tokenizer):
    reference, ours = full_size_reference()
    (chunk,) = tokenizer.chunk_prompt(FIVE_PHRASES)
    pixel_values = torch.randn(1, 3, 320, 427)
    expected, actual = run_both(reference, ours, pixel_values, torch.ones(1, 320, 427, dtype=torch.bool),
                                chunk.input_ids, FULL_SIZE_ULPS)
    assert_close(expected, actual, chunk.input_ids.shape[1], FULL_SIZE_ULPS)
