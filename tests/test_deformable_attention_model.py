"""The whole model gives the same detections with the native deformable-attention kernel as with the reference."""
from __future__ import annotations

import pytest
import torch

from perception.model.config import tiny_model_config
from perception.model.grounding_dino import GroundingDino
from tolerances import MODEL_ULPS, assert_within_ulps

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
    ),
]
pytestmark = pytest.mark.numeric


@pytest.mark.parametrize("device", DEVICES)
def test_native_kernel_and_reference_give_the_same_outputs(device: str) -> None:
    torch.manual_seed(0)
    model = GroundingDino(tiny_model_config()).eval().to(device)
    # [CLS] a person . a red mug . [SEP]
    input_ids = torch.tensor([[101, 1037, 2711, 1012, 1037, 2417, 14757, 1012, 102]], device=device)
    pixel_values = torch.randn(2, 3, 160, 224, device=device)
    image_padding_mask = torch.zeros(2, 160, 224, dtype=torch.bool, device=device)
    image_padding_mask[1, 120:] = True
    image_padding_mask[1, :, 150:] = True
    outputs = {}
    with torch.no_grad():
        text = model.encode_text(input_ids)
        for implementation in ("pytorch", device):
            model.set_attention_implementation(implementation)
            outputs[implementation] = model(pixel_values, image_padding_mask, text)
    reference, native = outputs["pytorch"], outputs[device]
    finite = torch.isfinite(reference.logits)
    assert torch.equal(finite, torch.isfinite(native.logits))
    assert_within_ulps(native.logits[finite], reference.logits[finite], MODEL_ULPS)
    assert_within_ulps(native.boxes, reference.boxes, MODEL_ULPS)
