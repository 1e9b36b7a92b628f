"""The bundled model: a small configuration of the full architecture, sized so that it trains on
2 CPU cores within 90 minutes and its weights stay well under 30 MB.

The text encoder is a 2-layer BERT whose word and position embeddings start from all-MiniLM-L6-v2's,
reduced from 384 to 128 dimensions by PCA: the pretrained vocabulary's geometry is kept at a quarter
of the size (the full MiniLM would be 90 MB on its own).
"""
from __future__ import annotations

import torch
from safetensors.torch import load_file

from perception.model.config import GroundingDinoConfig, SwinConfig, TextEncoderConfig
from perception.model.grounding_dino import GroundingDino
from perception.model.tokenizer import minilm_directory

TEXT_WIDTH = 128


def bundled_model_config() -> GroundingDinoConfig:
    return GroundingDinoConfig(
        backbone=SwinConfig(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=7),
        text=TextEncoderConfig(
            bert={"vocab_size": 30522, "hidden_size": TEXT_WIDTH, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "intermediate_size": 256, "max_position_embeddings": 512, "type_vocab_size": 2,
                  "layer_norm_eps": 1e-12, "hidden_act": "gelu"},
            max_text_len=256,
        ),
        hidden_dim=128,
        num_queries=50,  # generated scenes hold at most 6 objects
        encoder_layers=2,
        encoder_ffn_dim=256,
        encoder_heads=8,
        decoder_layers=3,
        decoder_ffn_dim=256,
        decoder_heads=8,
        contrastive_bias=True,  # MM-Grounding-DINO's prior keeps early focal losses stable
        dropout=0.0,  # a short schedule on unlimited generated data does not need dropout
        fusion_drop_path=0.0,
    )


def pca_embeddings(embeddings: torch.Tensor, width: int) -> torch.Tensor:
    """(n, d) -> (n, width): the rows projected on their top principal directions, scaled to unit variance."""
    centered = embeddings - embeddings.mean(0, keepdim=True)
    _, _, directions = torch.linalg.svd(centered[:: max(1, len(centered) // 8192)], full_matrices=False)
    projected = centered @ directions[:width].T
    return projected / projected.std()


@torch.no_grad()
def initialize_text_embeddings(model: GroundingDino) -> None:
    """Word and position embeddings from all-MiniLM-L6-v2, reduced to the model's text width by PCA."""
    state = load_file(str(minilm_directory() / "model.safetensors"))
    embeddings = model.text_encoder.bert.embeddings
    width = embeddings.word_embeddings.weight.shape[1]
    embeddings.word_embeddings.weight.copy_(pca_embeddings(state["embeddings.word_embeddings.weight"], width) * 0.05)
    embeddings.position_embeddings.weight.copy_(
        pca_embeddings(state["embeddings.position_embeddings.weight"], width) * 0.05)


IMAGE_SIZE = 256  # generated scenes are square; objects stay >= 38 px
TRAIN_FIRST_SEED = 1_000_000  # evaluation scenes use seeds below this
