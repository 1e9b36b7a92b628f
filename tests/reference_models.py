"""transformers' Grounding DINO models as the numerical reference: small random configurations with
every weight perturbed (the reference's own init zeroes several heads), loaded into ours."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from tolerances import assert_within_ulps
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


@contextmanager
def reference_query_ranking(ours: GroundingDino, reference_proposal_logits: torch.Tensor, ulps: float):
    """Inside the block, `ours` ranks its encoder proposals by the reference's logits for them, once its own
    are checked to be within `ulps` of those (see tests/tolerances.py).

    Query selection keeps the best num_queries proposals in order, and the order decides which learned content
    query each one joins. Neighbours in that ranking can be closer than two implementations' last bits (at
    Grounding-DINO-T sizes, 900 of ~2,800 proposals: two swapped with oneDNN limited to AVX2), and the decoders
    would then be compared on different inputs.
    reference_proposal_logits: (B, N, Nt) transformers' enc_outputs_class, cut to the prompt's Nt tokens.
    """
    def check_and_replace(module, inputs, output):
        finite = torch.isfinite(reference_proposal_logits)
        assert torch.equal(finite, torch.isfinite(output))
        assert_within_ulps(output[finite], reference_proposal_logits[finite], ulps)
        return reference_proposal_logits

    handle = ours.query_selection.class_head.register_forward_hook(check_and_replace)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def perturb(model: torch.nn.Module, scale: float = 0.05) -> None:
    generator = torch.Generator().manual_seed(1234)
    for parameter in model.parameters():
        parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
