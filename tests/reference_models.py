"""transformers' Grounding DINO models as the numerical reference: small random configurations with
every weight perturbed (the reference's own init zeroes several heads), loaded into ours."""
from __future__ import annotations

import torch
from transformers import (BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, MMGroundingDinoConfig,
                          MMGroundingDinoForObjectDetection, SwinConfig)

from perception.model.checkpoint import load_hf_state_dict
from perception.model.grounding_dino import GroundingDino
from perception.model.hf_config import config_from_hf

SMALL = dict(d_model=32, encoder_layers=2, decoder_layers=3, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=25,
             encoder_attention_heads=4, decoder_attention_heads=4)


def small_reference(kind: str = "grounding-dino", seed: int = 0):
    """(transformers model, our model with the same weights), both in eval mode."""
    torch.manual_seed(seed)
    backbone = SwinConfig(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window_size=7, out_indices=[2, 3, 4])
    text = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config_cls, model_cls = ((MMGroundingDinoConfig, MMGroundingDinoForObjectDetection) if kind == "mm-grounding-dino"
                             else (GroundingDinoConfig, GroundingDinoForObjectDetection))
    reference = model_cls(config_cls(backbone_config=backbone, text_config=text, **SMALL)).eval()
    perturb(reference)
    ours = GroundingDino(config_from_hf(reference.config.to_dict())).eval()
    load_hf_state_dict(ours, reference.state_dict())
    return reference, ours


def full_size_reference(seed: int = 0):
    """Grounding-DINO-T shapes (Swin-T + BERT-base), random weights."""
    torch.manual_seed(seed)
    backbone = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                          out_indices=[2, 3, 4])
    reference = GroundingDinoForObjectDetection(GroundingDinoConfig(backbone_config=backbone, text_config=BertConfig()))
    reference.eval()
    perturb(reference, scale=0.02)
    ours = GroundingDino(config_from_hf(reference.config.to_dict())).eval()
    load_hf_state_dict(ours, reference.state_dict())
    return reference, ours


@torch.no_grad()
def perturb(model: torch.nn.Module, scale: float = 0.05) -> None:
    generator = torch.Generator().manual_seed(1234)
    for parameter in model.parameters():
        parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
