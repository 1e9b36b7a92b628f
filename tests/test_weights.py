"""Loading weights: Hugging Face directories, original-layout files, strict key checks, clear errors."""
from __future__ import annotations

import pytest
import torch
from reference_models import small_reference

from perception.model.checkpoint import CheckpointMismatch, load_hf_state_dict
from perception.model.grounding_dino import GroundingDino
from perception.model.original_checkpoint import hf_to_original
from perception.model.tokenizer import PromptTokenizer
from perception.weights import WeightsError, load_weights


@pytest.fixture(scope="module")
def reference_and_ours():
    return small_reference("grounding-dino", seed=3)


def outputs(model, pixel_values):
    ids = PromptTokenizer.from_vocab_file(None, 256).chunk_prompt("a person . a red mug .")[0].input_ids
    with torch.no_grad():
        result = model(pixel_values, torch.zeros(pixel_values.shape[0], *pixel_values.shape[2:], dtype=torch.bool),
                       model.encode_text(ids))
    return result.logits, result.boxes


def test_hf_directory_round_trip(tmp_path, reference_and_ours):
    reference, ours = reference_and_ours
    reference.save_pretrained(tmp_path)
    loaded = load_weights(str(tmp_path))
    assert "Hugging Face checkpoint" in loaded.description
    pixel_values = torch.randn(1, 3, 128, 160)
    for a, b in zip(outputs(loaded.model.eval(), pixel_values), outputs(ours, pixel_values)):
        assert torch.equal(a, b)


def test_original_layout_gives_the_same_outputs_as_hf_layout(tmp_path, reference_and_ours):
    reference, ours = reference_and_ours
    reference.save_pretrained(tmp_path / "hf")
    from safetensors.torch import load_file

    hf_state = {k: v for k, v in load_file(tmp_path / "hf" / "model.safetensors").items() if "swin.layernorm" not in k}
    original = {"model": {f"module.{k}": v for k, v in hf_to_original(hf_state).items()}}
    path = tmp_path / "tiny_original.pth"
    torch.save(original, path)
    from perception.model.original_checkpoint import load_original_checkpoint, original_to_hf

    from_original = GroundingDino(ours.config).eval()
    load_hf_state_dict(from_original, original_to_hf(load_original_checkpoint(path)))
    pixel_values = torch.randn(1, 3, 128, 160)
    for a, b in zip(outputs(from_original, pixel_values), outputs(ours, pixel_values)):
        assert torch.equal(a, b)


def test_strict_loading_lists_missing_and_unexpected_keys(reference_and_ours):
    reference, ours = reference_and_ours
    state = dict(reference.state_dict())
    del state["model.level_embed"]
    state["model.decoder.some_new_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatch) as error:
        load_hf_state_dict(GroundingDino(ours.config), state)
    assert "image_backbone.level_embeddings" in str(error.value)
    assert "model.decoder.some_new_head.weight" in str(error.value)


def test_shape_mismatch_and_untied_duplicates_are_reported(reference_and_ours):
    reference, ours = reference_and_ours
    state = dict(reference.state_dict())
    state["model.enc_output.bias"] = torch.zeros(7)
    state["bbox_embed.1.layers.0.bias"] = state["bbox_embed.1.layers.0.bias"] + 1.0
    with pytest.raises(CheckpointMismatch) as error:
        load_hf_state_dict(GroundingDino(ours.config), state)
    message = str(error.value)
    assert "model.enc_output.bias: shape (7,)" in message
    assert "should be the same tied tensor" in message


def test_missing_weights_say_what_to_pass(tmp_path):
    with pytest.raises(WeightsError, match="no such file or directory"):
        load_weights(str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match="no config.json"):
        load_weights(str(tmp_path))
    with pytest.raises(WeightsError, match="unknown random model"):
        load_weights("random:huge")


def test_hub_id_without_network_fails_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="download the checkpoint elsewhere"):
        load_weights("IDEA-Research/grounding-dino-tiny-that-is-not-cached")
