"""Typed configuration of the Grounding DINO architecture.

One dataclass per block; sizes of a published checkpoint come from its own config (Hugging Face
``config.json`` through :func:`from_hf_config`, or a preset YAML in ``config/`` for the original
IDEA-Research ``.pth`` files). Unknown keys are an error, so a typo never silently keeps a default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class SwinConfig:
    """Swin Transformer image backbone (Liu et al. 2021), as Grounding DINO uses it."""

    embed_dim: int = 96  # channels after the patch embedding; doubles at every stage
    depths: tuple[int, ...] = (2, 2, 6, 2)  # Swin blocks per stage
    num_heads: tuple[int, ...] = (3, 6, 12, 24)  # attention heads per stage
    window_size: int = 7  # 7 for Swin-T (224 pretraining), 12 for Swin-B (384 pretraining)
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    # Stages (0-based) whose outputs feed the encoder: strides 8, 16, 32 for the published models.
    out_indices: tuple[int, ...] = (1, 2, 3)
    layer_norm_eps: float = 1e-5
    drop_path_rate: float = 0.0  # stochastic depth, training only

    def __post_init__(self) -> None:
        self.depths, self.num_heads, self.out_indices = tuple(self.depths), tuple(self.num_heads), tuple(self.out_indices)
        _check(len(self.depths) == len(self.num_heads) >= 1, "swin depths and num_heads need one entry per stage")
        _check(all(0 <= i < len(self.depths) for i in self.out_indices), "swin out_indices must name existing stages")
        for stage, heads in enumerate(self.num_heads):
            _check(self.embed_dim * 2**stage % heads == 0, f"swin stage {stage}: channels not divisible by {heads} heads")
        _check(self.window_size >= 1 and self.patch_size >= 1, "swin window_size and patch_size must be >= 1")

    def stage_channels(self) -> list[int]:
        return [self.embed_dim * 2**stage for stage in range(len(self.depths))]


@dataclass
class TextEncoderConfig:
    """BERT text backbone; ``bert`` holds transformers ``BertConfig`` keyword arguments."""

    bert: dict[str, Any] = field(
        default_factory=lambda: {  # bert-base-uncased
            "vocab_size": 30522,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12,
            "hidden_act": "gelu",
        }
    )
    max_text_len: int = 256  # tokens per chunk including [CLS] and [SEP]; longer prompts are chunked

    def __post_init__(self) -> None:
        _check(2 < self.max_text_len <= int(self.bert.get("max_position_embeddings", 512)),
               "text max_text_len must be in (2, max_position_embeddings]")


@dataclass
class GroundingDinoConfig:
    """The detector transformer around the two backbones (names follow the paper)."""

    backbone: SwinConfig = field(default_factory=SwinConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    hidden_dim: int = 256  # d_model of the feature enhancer and decoder
    num_queries: int = 900  # K of language-guided query selection
    num_feature_levels: int = 4  # backbone levels plus extra stride-2 convolutions
    encoder_layers: int = 6
    encoder_ffn_dim: int = 2048
    encoder_heads: int = 8  # deformable attention heads; text self-attention and fusion use half
    encoder_points: int = 4
    decoder_layers: int = 6
    decoder_ffn_dim: int = 2048
    decoder_heads: int = 8
    decoder_points: int = 4
    position_temperature: float = 20.0  # sine embedding temperature of the image features
    layer_norm_eps: float = 1e-5
    # MM-Grounding-DINO: similarity scaled by 1/sqrt(hidden_dim) plus a learned bias per head.
    contrastive_bias: bool = False
    share_box_head: bool = True  # one box MLP for all decoder layers (published models)
    share_class_head: bool = True  # one classifier (its bias, with contrastive_bias) for all decoder layers
    dropout: float = 0.1  # training only
    fusion_drop_path: float = 0.1  # training only

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = SwinConfig(**self.backbone)
        if isinstance(self.text, dict):
            self.text = TextEncoderConfig(**self.text)
        _check(self.hidden_dim % 32 == 0, "hidden_dim must be a multiple of 32 (GroupNorm with 32 groups)")
        _check(self.hidden_dim % self.encoder_heads == 0 and self.hidden_dim % self.decoder_heads == 0,
               "hidden_dim must be divisible by encoder_heads and decoder_heads")
        _check(self.encoder_heads % 2 == 0, "encoder_heads must be even (text attention and fusion use half)")
        _check((self.encoder_ffn_dim // 2) % (self.encoder_heads // 2) == 0,
               "encoder_ffn_dim / 2 must be divisible by encoder_heads / 2 (fusion attention width)")
        _check(len(self.backbone.out_indices) <= self.num_feature_levels,
               "num_feature_levels must be >= the number of backbone outputs")
        _check(self.num_queries >= 1, "num_queries must be >= 1")
        _check(0.0 <= self.dropout < 1.0 and 0.0 <= self.fusion_drop_path < 1.0, "dropout rates must be in [0, 1)")

    @property
    def max_text_len(self) -> int:
        return self.text.max_text_len


def config_from_dict(values: dict[str, Any]) -> GroundingDinoConfig:
    """Build a config from nested plain values (YAML presets), rejecting unknown keys."""
    return _build(GroundingDinoConfig, values, "model")


def _build(cls: type, values: dict[str, Any], where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown keys in {where}: {unknown}; allowed: {sorted(known)}")
    kwargs = dict(values)
    if cls is GroundingDinoConfig:
        for name, sub_cls in (("backbone", SwinConfig), ("text", TextEncoderConfig)):
            if isinstance(kwargs.get(name), dict):
                kwargs[name] = _build(sub_cls, kwargs[name], f"{where}.{name}")
    return cls(**kwargs)


def config_to_dict(config: GroundingDinoConfig) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    values["backbone"] = {k: list(v) if isinstance(v, tuple) else v for k, v in values["backbone"].items()}
    return values


def tiny_model_config() -> GroundingDinoConfig:
    """A small random-weight configuration for tests: every block present, runs in a second on CPU."""
    return GroundingDinoConfig(
        backbone=SwinConfig(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=7),
        text=TextEncoderConfig(
            bert={"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "intermediate_size": 37, "max_position_embeddings": 512, "type_vocab_size": 2,
                  "layer_norm_eps": 1e-12, "hidden_act": "gelu"},
            max_text_len=256,
        ),
        hidden_dim=32,
        num_queries=30,
        encoder_layers=1,
        encoder_ffn_dim=64,
        encoder_heads=4,
        decoder_layers=2,
        decoder_ffn_dim=64,
        decoder_heads=4,
    )
