"""The original IDEA-Research checkpoint layout <-> Hugging Face layout key map, and the presets.

The HF side is what transformers' ``GroundingDinoForObjectDetection.save_pretrained`` writes for a
tiny random model; the original names checked here were read from the original code
(groundingdino/models/GroundingDINO/{groundingdino,transformer,fuse_modules,transformer_vanilla}.py,
backbone/swin_transformer.py).
"""
import argparse

import pytest
import torch
import yaml
from safetensors.torch import load_file

from perception.model.config import GroundingDinoConfig, config_from_dict
from perception.model.original_checkpoint import (
    CheckpointLayoutError,
    hf_to_original,
    load_original_checkpoint,
    original_to_hf,
    unwrap_original_checkpoint,
)
from perception.model.presets import available_presets, load_preset
from tolerances import assert_within_ulps

transformers = pytest.importorskip("transformers")

SWIN_LAYERNORM = "model.backbone.conv_encoder.model.swin.layernorm."  # HF-only, unused by the backbone


def _tiny_hf_model(share_box_head: bool):
    torch.manual_seed(0)
    config = transformers.GroundingDinoConfig(
        backbone_config=transformers.SwinConfig(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                                                out_indices=[2, 3, 4]),
        text_config=transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=37),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=4, decoder_attention_heads=4, num_queries=20,
        decoder_bbox_embed_share=share_box_head,
    )
    return transformers.GroundingDinoForObjectDetection(config).eval()


@pytest.fixture(scope="module")
def hf_model():
    return _tiny_hf_model(share_box_head=True)


def _saved_state(model, directory):
    model.save_pretrained(directory)
    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def hf_state(hf_model, tmp_path_factory):
    return _saved_state(hf_model, tmp_path_factory.mktemp("hf_shared"))


@pytest.fixture()
def original(hf_state):
    return hf_to_original(hf_state)


def _assert_same_state(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert actual[key].dtype == tensor.dtype and torch.equal(actual[key], tensor), key


def test_round_trip_reproduces_the_saved_hf_state_dict(hf_state, original):
    expected = {key: value for key, value in hf_state.items() if not key.startswith(SWIN_LAYERNORM)}
    assert len(hf_state) - len(expected) == 2  # only the unused Swin final LayerNorm has no original name
    _assert_same_state(original_to_hf(original), expected)


def test_round_trip_with_one_box_head_per_decoder_layer(tmp_path):
    hf_state = _saved_state(_tiny_hf_model(share_box_head=False), tmp_path)
    assert "bbox_embed.1.layers.0.weight" in hf_state  # saved separately when not shared
    original = hf_to_original(hf_state, share_box_head=False)
    assert not torch.equal(original["bbox_embed.1.layers.0.weight"], original["bbox_embed.0.layers.0.weight"])
    assert original["transformer.decoder.bbox_embed.1.layers.0.weight"] is original["bbox_embed.1.layers.0.weight"]
    expected = {key: value for key, value in hf_state.items() if not key.startswith(SWIN_LAYERNORM)}
    _assert_same_state(original_to_hf(original, share_box_head=False), expected)
    with pytest.raises(CheckpointLayoutError, match=r"bbox_embed\.1\.layers\.0\.weight"):
        hf_to_original(hf_state, share_box_head=True)


@pytest.mark.parametrize("key, shape", [
    ("backbone.0.patch_embed.proj.weight", (32, 3, 4, 4)),
    ("backbone.0.patch_embed.norm.weight", (32,)),
    ("backbone.0.layers.0.blocks.0.attn.qkv.weight", (96, 32)),
    ("backbone.0.layers.2.blocks.1.attn.qkv.bias", (384,)),
    ("backbone.0.layers.0.blocks.0.attn.relative_position_bias_table", (169, 1)),
    ("backbone.0.layers.0.blocks.0.attn.relative_position_index", (49, 49)),
    ("backbone.0.layers.3.blocks.0.mlp.fc2.weight", (256, 1024)),
    ("backbone.0.layers.2.downsample.reduction.weight", (256, 512)),
    ("backbone.0.norm1.weight", (64,)),  # output norms of stages 1..3 (return_interm_indices)
    ("backbone.0.norm3.bias", (256,)),
    ("bert.embeddings.word_embeddings.weight", (30522, 32)),
    ("bert.embeddings.position_ids", (1, 512)),
    ("bert.encoder.layer.0.attention.self.query.weight", (32, 32)),
    ("feat_map.weight", (32, 32)),
    ("input_proj.3.0.weight", (32, 256, 3, 3)),
    ("input_proj.0.1.bias", (32,)),
    ("transformer.level_embed", (4, 32)),
    ("transformer.tgt_embed.weight", (20, 32)),
    ("transformer.enc_output.weight", (32, 32)),
    ("transformer.enc_output_norm.bias", (32,)),
    ("transformer.enc_out_bbox_embed.layers.2.weight", (4, 32)),
    ("transformer.encoder.layers.0.self_attn.sampling_offsets.weight", (128, 32)),
    ("transformer.encoder.layers.0.norm2.weight", (32,)),
    ("transformer.encoder.text_layers.0.self_attn.in_proj_weight", (96, 32)),
    ("transformer.encoder.text_layers.0.linear1.weight", (32, 32)),
    ("transformer.encoder.fusion_layers.0.gamma_v", (32,)),
    ("transformer.encoder.fusion_layers.0.attn.values_l_proj.weight", (32, 32)),
    ("transformer.encoder.fusion_layers.0.layer_norm_l.weight", (32,)),
    ("transformer.decoder.layers.1.ca_text.in_proj_bias", (96,)),
    ("transformer.decoder.layers.1.catext_norm.weight", (32,)),
    ("transformer.decoder.layers.1.cross_attn.attention_weights.weight", (64, 32)),
    ("transformer.decoder.layers.0.norm3.weight", (32,)),
    ("transformer.decoder.norm.weight", (32,)),
    ("transformer.decoder.ref_point_head.layers.0.weight", (32, 64)),
    ("bbox_embed.1.layers.2.weight", (4, 32)),
    ("transformer.decoder.bbox_embed.1.layers.0.bias", (32,)),
])
def test_original_names_and_shapes(original, key, shape):
    assert tuple(original[key].shape) == shape


def test_original_layout_has_no_hf_names_and_shares_the_box_head(original):
    assert not [key for key in original if key.startswith(("model.", "module."))]
    assert "backbone.0.norm0.weight" not in original  # stage 0 is not returned
    head = original["bbox_embed.0.layers.0.weight"]
    for name in ("bbox_embed.1", "transformer.decoder.bbox_embed.0", "transformer.decoder.bbox_embed.1"):
        assert original[f"{name}.layers.0.weight"] is head


@pytest.mark.numeric
def test_fused_in_proj_behaves_as_nn_multihead_attention(hf_model, original):
    prefix = "transformer.decoder.layers.0.self_attn."
    reference = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    reference.load_state_dict({key[len(prefix):]: value for key, value in original.items() if key.startswith(prefix)})
    queries, keys, values = torch.randn(3, 2, 5, 32).unbind(0)
    with torch.no_grad():
        expected = reference(queries, keys, values, need_weights=False)[0]
        actual = hf_model.model.decoder.layers[0].self_attn(queries, keys, values)[0]
    assert_within_ulps(actual, expected, 32)  # two implementations, another order: 3 ulps seen


def test_relative_position_index_equals_transformers_buffer(hf_model, original):
    buffers = dict(hf_model.named_buffers())
    hf_index = buffers["model.backbone.conv_encoder.model.swin.encoder.layers.0.blocks.0.attention."
                       "relative_position_bias.relative_position_index"]
    assert torch.equal(original["backbone.0.layers.0.blocks.0.attn.relative_position_index"].flatten(), hf_index)


def test_unused_original_tensors_are_dropped(hf_state, original):
    with_extras = {**original, "bert.pooler.dense.weight": torch.ones(32, 32), "bert.pooler.dense.bias": torch.ones(32),
                   "label_enc.weight": torch.ones(2001, 32)}
    assert sorted(original_to_hf(with_extras)) == sorted(original_to_hf(original))


def test_derived_buffers_are_optional(original):
    without = {key: value for key, value in original.items()
               if not key.endswith(("relative_position_index", "position_ids"))}
    assert sorted(original_to_hf(without)) == sorted(original_to_hf(original))


def test_unknown_key_is_named(original):
    with pytest.raises(CheckpointLayoutError, match=r"1 keys match no rule.*transformer\.encoder\.bogus\.weight"):
        original_to_hf({**original, "transformer.encoder.bogus.weight": torch.zeros(1)})


def test_missing_repeat_is_named(original):
    del original["transformer.decoder.bbox_embed.1.layers.0.weight"]
    with pytest.raises(CheckpointLayoutError, match=r"missing: transformer\.decoder\.bbox_embed\.1\.layers\.0\.weight"):
        original_to_hf(original)


def test_repeat_of_a_missing_head_is_named(original):
    del original["bbox_embed.0.layers.2.bias"]
    with pytest.raises(CheckpointLayoutError, match=r"repeats bbox_embed\.0\.layers\.2\.bias, which is missing"):
        original_to_hf(original)


def test_differing_repeat_is_named(original):
    original["transformer.decoder.bbox_embed.1.layers.1.weight"] = original["bbox_embed.0.layers.1.weight"] + 1
    with pytest.raises(CheckpointLayoutError,
                       match=r"transformer\.decoder\.bbox_embed\.1\.layers\.1\.weight differs from bbox_embed\.0"):
        original_to_hf(original)


def test_wrong_derived_buffer_is_named(original):
    key = "backbone.0.layers.1.blocks.0.attn.relative_position_index"
    original[key] = original[key].flip(0)
    with pytest.raises(CheckpointLayoutError, match=key.replace(".", r"\.") + " differs"):
        original_to_hf(original)


def test_fused_tensor_not_divisible_by_three(original):
    original["transformer.decoder.layers.0.ca_text.in_proj_bias"] = torch.zeros(95)
    with pytest.raises(CheckpointLayoutError, match=r"ca_text\.in_proj_bias: first dimension 95"):
        original_to_hf(original)


def test_pth_container_is_unwrapped(original, tmp_path):
    path = tmp_path / "groundingdino_tiny.pth"
    torch.save({"model": {f"module.{key}": value for key, value in original.items()},
                "args": argparse.Namespace(backbone="swin_T_224_1k")}, path)
    _assert_same_state(load_original_checkpoint(path), original)
    assert unwrap_original_checkpoint(original).keys() == original.keys()  # a bare state dict is accepted


@pytest.mark.parametrize("checkpoint, message", [
    ({"model": {"module.a": torch.zeros(1), "b": torch.zeros(1)}}, "some keys start with 'module.'"),
    ({"model": {"a": torch.zeros(1), "epoch": 3}}, "not tensors: epoch"),
    ({"model": [torch.zeros(1)]}, "entry 'model' is a list"),
    ([torch.zeros(1)], "got list"),
])
def test_bad_container_is_rejected(checkpoint, message):
    with pytest.raises(CheckpointLayoutError, match=message):
        unwrap_original_checkpoint(checkpoint)


def test_missing_pth_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="groundingdino_swint_ogc.pth"):
        load_original_checkpoint(tmp_path / "groundingdino_swint_ogc.pth")


@pytest.mark.parametrize("name, embed_dim, depths, window_size", [
    ("groundingdino_swint_ogc", 96, (2, 2, 6, 2), 7),
    ("groundingdino_swinb_cogcoor", 128, (2, 2, 18, 2), 12),
])
def test_presets_load(name, embed_dim, depths, window_size):
    config, checkpoint = load_preset(name)
    assert isinstance(config, GroundingDinoConfig)
    backbone = config.backbone
    assert (backbone.embed_dim, backbone.depths, backbone.window_size) == (embed_dim, depths, window_size)
    assert config.backbone.out_indices == (1, 2, 3)
    assert (config.hidden_dim, config.num_queries, config.encoder_layers, config.decoder_layers) == (256, 900, 6, 6)
    assert config.text.bert["hidden_size"] == 768 and config.max_text_len == 256
    assert checkpoint == {"layout": "original", "file": f"{name}.pth"}


def test_preset_by_path_and_yaml_model_section_goes_through_config_from_dict(tmp_path):
    path = available_presets()["groundingdino_swint_ogc"]
    values = yaml.safe_load(path.read_text())
    assert config_from_dict(values["model"]) == load_preset(path)[0]
    values["model"]["hidden_dims"] = 256
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="unknown keys in model: \\['hidden_dims'\\]"):
        load_preset(bad)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'swin_huge'; available: \[.*'groundingdino_swint_ogc'") as err:
        load_preset("swin_huge")
    assert "'groundingdino_swinb_cogcoor'" in str(err.value)
