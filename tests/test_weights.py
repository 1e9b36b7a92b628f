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


def save_processor(directory, vocab_file, **image_settings):
    """What transformers 5's GroundingDinoProcessor.save_pretrained writes: processor_config.json (image
    settings nested under image_processor) and tokenizer.json, no preprocessor_config.json or vocab.txt."""
    from transformers import BertTokenizer, GroundingDinoImageProcessorPil, GroundingDinoProcessor

    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessorPil(**image_settings),
                                       tokenizer=BertTokenizer(str(vocab_file)))
    processor.save_pretrained(directory)


def test_image_settings_saved_by_transformers_5_are_used(tmp_path, reference_and_ours):
    from perception.model.tokenizer import default_vocab_file

    reference, _ = reference_and_ours
    reference.save_pretrained(tmp_path)
    save_processor(tmp_path, default_vocab_file(), size={"shortest_edge": 320, "longest_edge": 512},
                   image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    assert not (tmp_path / "preprocessor_config.json").exists() and (tmp_path / "processor_config.json").exists()
    loaded = load_weights(str(tmp_path))
    assert (loaded.preprocess.shortest_edge, loaded.preprocess.longest_edge) == (320, 512)
    assert loaded.preprocess.mean == (0.5, 0.5, 0.5) and loaded.preprocess.std == (0.25, 0.25, 0.25)
    assert loaded.vocab_file is None  # tokenizer.json holds bert-base-uncased: the offline copy serves


def test_a_saved_vocabulary_other_than_bert_base_is_not_ignored(tmp_path, reference_and_ours):
    from perception.model.tokenizer import default_vocab_file

    reference, _ = reference_and_ours
    reference.save_pretrained(tmp_path)
    tokens = default_vocab_file().read_text().splitlines()
    other = tmp_path / "other_vocab.txt"
    other.write_text("\n".join(tokens[:2000] + ["robotarm"] + tokens[2001:]) + "\n")
    save_processor(tmp_path / "checkpoint", other)
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "checkpoint" / name).write_bytes((tmp_path / name).read_bytes())
    with pytest.raises(WeightsError, match="vocab.txt"):
        load_weights(str(tmp_path / "checkpoint"))


def test_the_crowd_model_carries_its_tuned_settings_and_the_bundled_model_none():
    from perception.weights import tuned_settings

    crowd = tuned_settings("bundled:crowds")
    assert crowd.postprocess == {"box_threshold": 0.4}
    assert crowd.tracking == {"duplicate_iou": 0.5, "kalman_process_noise": 0.003, "kalman_carry": False,
                              "cross_phrase_iou": 0.7, "crowd_measurement_noise": 16}
    assert crowd.source.name == "tuned_settings.yaml"
    assert tuned_settings(None) == crowd  # the default weights
    for spec in ("bundled", "random:tiny", "IDEA-Research/grounding-dino-tiny"):
        assert tuned_settings(spec) is None, spec  # reads nothing from the network


@pytest.mark.parametrize("text, message", [
    ("box_threshold: 1.5\n", r"box_threshold must be in \[0, 1\]"),
    ("box_treshold: 0.4\n", r"unknown keys \['box_treshold'\]"),
    ("tracking: 0.5\n", "tracking must be a mapping"),
    ("- 0.4\n", "must be a mapping of settings"),
    ("box_threshold: [\n", "is not valid YAML"),
    (b"box_threshold: 0.4 # \xff\n", "cannot read .*'utf-8' codec can't decode"),
])
def test_a_wrong_tuned_settings_file_is_refused_naming_it(tmp_path, text, message):
    from perception.weights import TUNED_SETTINGS_FILE, tuned_settings

    (tmp_path / TUNED_SETTINGS_FILE).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(WeightsError, match=message) as error:
        tuned_settings(str(tmp_path))
    assert TUNED_SETTINGS_FILE in str(error.value)
