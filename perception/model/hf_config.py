"""Our configuration from a Hugging Face ``config.json`` of grounding-dino or mm-grounding-dino."""
from __future__ import annotations

from typing import Any

from perception.model.config import GroundingDinoConfig, SwinConfig, TextEncoderConfig

SUPPORTED_MODEL_TYPES = ("grounding-dino", "mm-grounding-dino")
BERT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act", "pad_token_id")
# Settings of the architecture family we do not implement, with the value every published model uses.
REQUIRED_SETTINGS = {
    "two_stage": True,
    "embedding_init_target": True,
    "position_embedding_type": "sine",
    "query_dim": 4,
    "two_stage_bbox_embed_share": False,
    "activation_function": "relu",
    "use_timm_backbone": False,
}


def config_from_hf(hf: dict[str, Any]) -> GroundingDinoConfig:
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"config.json model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
    for key, required in REQUIRED_SETTINGS.items():
        if key in hf and hf[key] != required:
            raise ValueError(f"config.json sets {key}={hf[key]!r}; only {required!r} is supported")
    backbone = hf.get("backbone_config") or {}
    if backbone.get("model_type", "swin") != "swin" or backbone.get("use_absolute_embeddings", False):
        raise ValueError("only Swin backbones without absolute position embeddings are supported")
    swin = SwinConfig(
        embed_dim=backbone.get("embed_dim", 96),
        depths=tuple(backbone.get("depths", (2, 2, 6, 2))),
        num_heads=tuple(backbone.get("num_heads", (3, 6, 12, 24))),
        window_size=backbone.get("window_size", 7),
        patch_size=backbone.get("patch_size", 4),
        mlp_ratio=backbone.get("mlp_ratio", 4.0),
        qkv_bias=backbone.get("qkv_bias", True),
        # transformers counts the stem as stage 0; our stages start at the first Swin stage.
        out_indices=tuple(index - 1 for index in backbone.get("out_indices", (2, 3, 4))),
        layer_norm_eps=backbone.get("layer_norm_eps", 1e-5),
        drop_path_rate=backbone.get("drop_path_rate", 0.0),
    )
    text_defaults = TextEncoderConfig().bert
    text_hf = hf.get("text_config") or {}
    bert = {key: text_hf.get(key, text_defaults.get(key)) for key in BERT_KEYS if key in text_hf or key in text_defaults}
    return GroundingDinoConfig(
        backbone=swin,
        text=TextEncoderConfig(bert=bert, max_text_len=hf.get("max_text_len", 256)),
        hidden_dim=hf.get("d_model", 256),
        num_queries=hf.get("num_queries", 900),
        num_feature_levels=hf.get("num_feature_levels", 4),
        encoder_layers=hf.get("encoder_layers", 6),
        encoder_ffn_dim=hf.get("encoder_ffn_dim", 2048),
        encoder_heads=hf.get("encoder_attention_heads", 8),
        encoder_points=hf.get("encoder_n_points", 4),
        decoder_layers=hf.get("decoder_layers", 6),
        decoder_ffn_dim=hf.get("decoder_ffn_dim", 2048),
        decoder_heads=hf.get("decoder_attention_heads", 8),
        decoder_points=hf.get("decoder_n_points", 4),
        position_temperature=float(hf.get("positional_embedding_temperature", 20)),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
        contrastive_bias=model_type == "mm-grounding-dino",
        share_box_head=hf.get("decoder_bbox_embed_share", True),
        share_class_head=hf.get("decoder_cls_embed_share", True),
        dropout=hf.get("dropout", 0.1),
        fusion_drop_path=hf.get("fusion_droppath", 0.1),
    )
