"""Strict weight loading: Hugging Face layout state dicts -> our module names, through an explicit map.

Every tensor of the file is used (or is a documented derived/unused tensor, checked where it can be),
every parameter is filled, and tied tensors (one head shared by all decoder layers) must agree.
Otherwise :class:`CheckpointMismatch` lists the offending keys.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from perception.model.swin import relative_position_index


class CheckpointMismatch(ValueError):
    """Raised when a checkpoint and the model disagree; the message lists the keys."""


_SWIN = r"model\.backbone\.conv_encoder\.model\."
_BLOCK = _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_ENCODER = r"model\.encoder\.layers\.(\d+)\."
_DECODER = r"model\.decoder\.layers\.(\d+)\."
_ATTENTION = {"query": "query", "key": "key", "value": "value", "out_proj": "output"}

# transformers >= 5 renamed some Swin tensors in memory; files on the hub keep the old names. Both are read.
_NEW_TO_HUB_NAMES: list[tuple[str, str]] = [
    (r"conv_encoder\.model\.swin\.(embeddings|encoder)\.", r"conv_encoder.model.\1."),
    (r"\.attention\.([qkv])_proj\.", lambda m: ".attention.self." + {"q": "query", "k": "key", "v": "value"}[m[1]] + "."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.attention\.relative_position_bias\.relative_position_bias_table$", ".attention.self.relative_position_bias_table"),
    (r"(blocks\.\d+)\.mlp\.fc1\.", r"\1.intermediate.dense."),
    (r"(blocks\.\d+)\.mlp\.fc2\.", r"\1.output.dense."),
]

# (pattern on the hub name, our name). Applied in order; the first match wins.
HF_TO_OURS: list[tuple[str, str | Callable[[re.Match], str]]] = [
    # Swin image backbone.
    (_SWIN + r"embeddings\.patch_embeddings\.projection\.", "image_backbone.swin.patch_embed.projection."),
    (_SWIN + r"embeddings\.norm\.", "image_backbone.swin.patch_embed.norm."),
    (_BLOCK + r"attention\.self\.(query|key|value)\.", r"image_backbone.swin.stages.\1.blocks.\2.attention.\3."),
    (_BLOCK + r"attention\.self\.relative_position_bias_table$",
     r"image_backbone.swin.stages.\1.blocks.\2.attention.relative_position_bias_table"),
    (_BLOCK + r"attention\.output\.dense\.", r"image_backbone.swin.stages.\1.blocks.\2.attention.output."),
    (_BLOCK + r"layernorm_before\.", r"image_backbone.swin.stages.\1.blocks.\2.norm_before."),
    (_BLOCK + r"layernorm_after\.", r"image_backbone.swin.stages.\1.blocks.\2.norm_after."),
    (_BLOCK + r"intermediate\.dense\.", r"image_backbone.swin.stages.\1.blocks.\2.mlp.fc1."),
    (_BLOCK + r"output\.dense\.", r"image_backbone.swin.stages.\1.blocks.\2.mlp.fc2."),
    (_SWIN + r"encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.", r"image_backbone.swin.stages.\1.downsample.\2."),
    # stageN of transformers is our stage N-1; output_norms follow config.out_indices (resolved in _map_key).
    (_SWIN + r"hidden_states_norms\.stage(\d+)\.", r"image_backbone.swin.output_norms.@stage\1@."),
    (r"model\.input_proj_vision\.(\d+)\.([01])\.", r"image_backbone.input_projections.\1.\2."),
    (r"model\.level_embed$", "image_backbone.level_embeddings"),
    # Text backbone.
    (r"model\.text_backbone\.", "text_encoder.bert."),
    (r"model\.text_projection\.", "text_encoder.projection."),
    # Feature enhancer.
    (_ENCODER + r"text_enhancer_layer\.self_attn\.(query|key|value|out_proj)\.",
     lambda m: f"feature_enhancer.layers.{m[1]}.text_layer.self_attention.{_ATTENTION[m[2]]}."),
    (_ENCODER + r"text_enhancer_layer\.(fc1|fc2)\.", r"feature_enhancer.layers.\1.text_layer.ffn.\2."),
    (_ENCODER + r"text_enhancer_layer\.layer_norm_before\.", r"feature_enhancer.layers.\1.text_layer.attention_norm."),
    (_ENCODER + r"text_enhancer_layer\.layer_norm_after\.", r"feature_enhancer.layers.\1.text_layer.ffn.norm."),
    (_ENCODER + r"fusion_layer\.vision_param$", r"feature_enhancer.layers.\1.fusion.vision_gamma"),
    (_ENCODER + r"fusion_layer\.text_param$", r"feature_enhancer.layers.\1.fusion.text_gamma"),
    (_ENCODER + r"fusion_layer\.layer_norm_(vision|text)\.", r"feature_enhancer.layers.\1.fusion.\2_norm."),
    (_ENCODER + r"fusion_layer\.attn\.(vision_proj|text_proj|values_vision_proj|values_text_proj|out_vision_proj|out_text_proj)\.",
     lambda m: f"feature_enhancer.layers.{m[1]}.fusion.attention." + {
         "vision_proj": "vision_query", "text_proj": "text_key", "values_vision_proj": "vision_value",
         "values_text_proj": "text_value", "out_vision_proj": "vision_output", "out_text_proj": "text_output"}[m[2]] + "."),
    (_ENCODER + r"deformable_layer\.self_attn\.", r"feature_enhancer.layers.\1.image_layer.self_attention."),
    (_ENCODER + r"deformable_layer\.self_attn_layer_norm\.", r"feature_enhancer.layers.\1.image_layer.attention_norm."),
    (_ENCODER + r"deformable_layer\.(fc1|fc2)\.", r"feature_enhancer.layers.\1.image_layer.ffn.\2."),
    (_ENCODER + r"deformable_layer\.final_layer_norm\.", r"feature_enhancer.layers.\1.image_layer.ffn.norm."),
    # Language-guided query selection.
    (r"model\.enc_output\.", "query_selection.output_projection."),
    (r"model\.enc_output_norm\.", "query_selection.output_norm."),
    (r"model\.encoder_output_bbox_embed\.", "query_selection.box_head."),
    (r"model\.encoder_output_class_embed\.bias$", "query_selection.class_head.bias"),
    (r"model\.query_position_embeddings\.", "query_selection.content_queries."),
    # Cross-modality decoder.
    (_DECODER + r"(self_attn|encoder_attn_text)\.(query|key|value|out_proj)\.",
     lambda m: f"decoder.layers.{m[1]}." + {"self_attn": "self_attention", "encoder_attn_text": "text_cross_attention"}[m[2]]
     + f".{_ATTENTION[m[3]]}."),
    (_DECODER + r"self_attn_layer_norm\.", r"decoder.layers.\1.self_attention_norm."),
    (_DECODER + r"encoder_attn_text_layer_norm\.", r"decoder.layers.\1.text_cross_attention_norm."),
    (_DECODER + r"encoder_attn\.", r"decoder.layers.\1.image_cross_attention."),
    (_DECODER + r"encoder_attn_layer_norm\.", r"decoder.layers.\1.image_cross_attention_norm."),
    (_DECODER + r"(fc1|fc2)\.", r"decoder.layers.\1.ffn.\2."),
    (_DECODER + r"final_layer_norm\.", r"decoder.layers.\1.ffn.norm."),
    (r"model\.decoder\.layer_norm\.", "decoder.output_norm."),
    (r"model\.decoder\.reference_points_head\.", "decoder.query_position_head."),
    # Heads: transformers stores them twice (model.decoder.X and X); both name the same tensors.
    (r"(?:model\.decoder\.)?bbox_embed\.(\d+)\.", r"decoder.box_heads.\1."),
    (r"(?:model\.decoder\.)?class_embed\.(\d+)\.bias$", r"class_heads.\1.bias"),
]

# Tensors a file may hold that the model does not use; each is either recomputed from the config
# (and checked against it) or a part of transformers' SwinModel that the backbone output never reaches.
DERIVED_OR_UNUSED = [
    (re.compile(_BLOCK + r"attention\.self\.relative_position_index$"), "derived: Swin relative position index"),
    (re.compile(r"model\.text_backbone\.embeddings\.position_ids$"), "derived: BERT position ids 0..n-1"),
    (re.compile(_SWIN + r"(?:swin\.)?layernorm\.(weight|bias)$"), "unused: SwinModel's final norm (not a backbone output)"),
]


def hub_name(key: str) -> str:
    """Normalize a transformers-5 in-memory name to the name files on the hub use."""
    for pattern, replacement in _NEW_TO_HUB_NAMES:
        key = re.sub(pattern, replacement, key)
    return key


def _map_key(key: str, out_indices: tuple[int, ...]) -> str | None:
    for pattern, replacement in HF_TO_OURS:
        match = re.fullmatch(pattern + r"(.*)", key)
        if match is None:
            continue
        rest = match.groups()[-1]
        head = key[: len(key) - len(rest)] if rest else key
        ours = re.sub(pattern, replacement, head) + rest
        stage = re.search(r"@stage(\d+)@", ours)
        if stage:
            our_stage = int(stage[1]) - 1
            if our_stage not in out_indices:
                return None
            ours = ours.replace(stage[0], str(out_indices.index(our_stage)))
        return ours
    return None


def _check_derived(key: str, tensor: torch.Tensor) -> str | None:
    """None when the tensor is a consistent derived/unused tensor; else why it is not."""
    if key.endswith("relative_position_index"):
        window = int(round((tensor.numel()) ** 0.25))
        if not torch.equal(tensor.reshape(-1).long(), relative_position_index(window).reshape(-1)):
            return f"{key} differs from the relative position index of a {window}x{window} window"
    if key.endswith("position_ids"):
        if not torch.equal(tensor.reshape(-1).long(), torch.arange(tensor.numel())):
            return f"{key} is not 0..{tensor.numel() - 1}"
    return None


def _alias_groups(model: nn.Module) -> dict[str, list[str]]:
    """Our state-dict keys grouped by the storage they share: tied heads appear under several names."""
    groups: dict[tuple, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault((tensor.data_ptr(), tuple(tensor.shape)), []).append(key)
    return {names[0]: names for names in groups.values()}


def load_hf_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Fill ``model`` (a GroundingDino) from a transformers GroundingDinoForObjectDetection /
    MMGroundingDinoForObjectDetection state dict, strictly. Raises CheckpointMismatch with the key lists."""
    out_indices = model.config.backbone.out_indices
    ours = model.state_dict()
    alias_of = {name: canonical for canonical, names in _alias_groups(model).items() for name in names}
    values: dict[str, tuple[str, torch.Tensor]] = {}
    unexpected, problems = [], []
    for file_key, tensor in state_dict.items():
        key = hub_name(file_key)
        derived = next((why for pattern, why in DERIVED_OR_UNUSED if pattern.fullmatch(key)), None)
        if derived is not None:
            problem = _check_derived(key, tensor)
            if problem:
                problems.append(problem)
            continue
        our_key = _map_key(key, out_indices)
        if our_key is None or our_key not in ours:
            unexpected.append(file_key)
            continue
        if tuple(tensor.shape) != tuple(ours[our_key].shape):
            problems.append(f"{file_key}: shape {tuple(tensor.shape)} but the model has {tuple(ours[our_key].shape)}")
            continue
        canonical = alias_of[our_key]
        if canonical in values and not torch.equal(values[canonical][1], tensor):
            problems.append(f"{file_key} and {values[canonical][0]} should be the same tied tensor but differ")
            continue
        values.setdefault(canonical, (file_key, tensor))
    missing = sorted(set(alias_of.values()) - set(values))
    if missing or unexpected or problems:
        lines = []
        if missing:
            lines.append(f"missing in the checkpoint ({len(missing)}): " + ", ".join(missing[:40]))
        if unexpected:
            lines.append(f"not used by the model ({len(unexpected)}): " + ", ".join(sorted(unexpected)[:40]))
        lines += problems[:40]
        raise CheckpointMismatch("checkpoint does not match the model:\n  " + "\n  ".join(lines))
    full = {name: values[canonical][1] for name, canonical in alias_of.items()}
    model.load_state_dict(full, strict=True)
