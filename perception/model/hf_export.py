"""Save our model as a Hugging Face layout checkpoint (config.json + model.safetensors).

The names are those transformers' GroundingDinoForObjectDetection / MMGroundingDinoForObjectDetection
use, found by building that model on the meta device (no memory, no download) and inverting the
explicit map in checkpoint.py, so the saved directory loads through our strict loader and in
transformers alike.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from perception.model.checkpoint import _map_key, hub_name
from perception.model.config import GroundingDinoConfig
from perception.model.grounding_dino import GroundingDino
from perception.preprocess import PreprocessConfig


def config_to_hf(config: GroundingDinoConfig) -> dict[str, Any]:
    swin = config.backbone
    return {
        "model_type": "mm-grounding-dino" if config.contrastive_bias else "grounding-dino",
        "architectures": ["MMGroundingDinoForObjectDetection" if config.contrastive_bias
                          else "GroundingDinoForObjectDetection"],
        "backbone_config": {
            "model_type": "swin", "embed_dim": swin.embed_dim, "depths": list(swin.depths),
            "num_heads": list(swin.num_heads), "window_size": swin.window_size, "patch_size": swin.patch_size,
            "mlp_ratio": swin.mlp_ratio, "qkv_bias": swin.qkv_bias,
            "out_indices": [index + 1 for index in swin.out_indices], "layer_norm_eps": swin.layer_norm_eps,
            "drop_path_rate": swin.drop_path_rate,
        },
        "text_config": {"model_type": "bert", **config.text.bert},
        "max_text_len": config.text.max_text_len,
        "d_model": config.hidden_dim, "num_queries": config.num_queries,
        "num_feature_levels": config.num_feature_levels,
        "encoder_layers": config.encoder_layers, "encoder_ffn_dim": config.encoder_ffn_dim,
        "encoder_attention_heads": config.encoder_heads, "encoder_n_points": config.encoder_points,
        "decoder_layers": config.decoder_layers, "decoder_ffn_dim": config.decoder_ffn_dim,
        "decoder_attention_heads": config.decoder_heads, "decoder_n_points": config.decoder_points,
        # transformers declares this an int; our float is a whole number for every published model.
        "positional_embedding_temperature": int(config.position_temperature)
        if float(config.position_temperature).is_integer() else config.position_temperature,
        "layer_norm_eps": config.layer_norm_eps,
        "decoder_bbox_embed_share": config.share_box_head,
        **({"decoder_cls_embed_share": config.share_class_head} if config.contrastive_bias else {}),
        "dropout": config.dropout, "fusion_droppath": config.fusion_drop_path,
    }


def hf_names(config: GroundingDinoConfig) -> dict[str, list[str]]:
    """Our state-dict key -> every transformers key (hub naming) that holds the same tensor."""
    from transformers import (GroundingDinoConfig as HFConfig, GroundingDinoForObjectDetection,
                              MMGroundingDinoConfig, MMGroundingDinoForObjectDetection)

    hf = config_to_hf(config)
    config_cls, model_cls = ((MMGroundingDinoConfig, MMGroundingDinoForObjectDetection) if config.contrastive_bias
                             else (HFConfig, GroundingDinoForObjectDetection))
    with torch.device("meta"):
        reference = model_cls(config_cls(**{k: v for k, v in hf.items() if k not in ("model_type", "architectures")}))
    names: dict[str, list[str]] = {}
    for key in reference.state_dict():
        name = hub_name(key)
        ours = _map_key(name, config.backbone.out_indices)
        if ours is not None:
            names.setdefault(ours, []).append(name)
    return names


def save_hf_checkpoint(model: GroundingDino, directory: str | Path, vocab_file: Path | None = None,
                       dtype: torch.dtype = torch.float32, preprocess: PreprocessConfig | None = None) -> Path:
    """Write config.json, model.safetensors in ``dtype``, and when given vocab.txt and the input size
    and normalization (preprocessor_config.json, transformers' format) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = hf_names(model.config)
    state = {}
    for key, tensor in model.state_dict().items():
        if key not in names:
            raise KeyError(f"{key} has no Hugging Face name; extend HF_TO_OURS in checkpoint.py")
        for name in names[key]:
            state.setdefault(name, tensor.detach().to("cpu", dtype).contiguous().clone())
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2) + "\n")
    if vocab_file is not None:
        (directory / "vocab.txt").write_text(Path(vocab_file).read_text())
    if preprocess is not None:
        (directory / "preprocessor_config.json").write_text(json.dumps({
            "size": {"shortest_edge": preprocess.shortest_edge, "longest_edge": preprocess.longest_edge},
            "image_mean": list(preprocess.mean), "image_std": list(preprocess.std)}, indent=2) + "\n")
    return directory
