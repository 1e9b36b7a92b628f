"""Our model saved in the Hugging Face layout loads strictly through our loader and in transformers."""
from __future__ import annotations

import pytest
import torch
from reference_models import reference_query_ranking
from transformers import GroundingDinoForObjectDetection, MMGroundingDinoForObjectDetection

from perception.model.config import tiny_model_config
from perception.model.grounding_dino import GroundingDino
from perception.model.hf_export import save_hf_checkpoint
from perception.weights import load_weights
from tolerances import MODEL_ULPS, assert_within_ulps

pytestmark = pytest.mark.numeric


def randomized(contrastive_bias: bool) -> GroundingDino:
    torch.manual_seed(0)
    config = tiny_model_config()
    config.contrastive_bias = contrastive_bias
    model = GroundingDino(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model


def run(model, pixel_values, input_ids):
    with torch.no_grad():
        output = model(pixel_values, torch.zeros(1, *pixel_values.shape[2:], dtype=torch.bool),
                       model.encode_text(input_ids))
    return output.logits, output.boxes


def test_saved_checkpoint_round_trips_and_loads_in_transformers(tmp_path):
    input_ids = torch.tensor([[101, 1037, 2711, 1012, 1037, 2417, 14757, 1012, 102]])
    pixel_values = torch.randn(1, 3, 128, 160)
    for contrastive_bias, reference_cls in ((False, GroundingDinoForObjectDetection),
                                            (True, MMGroundingDinoForObjectDetection)):
        model = randomized(contrastive_bias)
        directory = save_hf_checkpoint(model, tmp_path / str(contrastive_bias))
        reloaded = load_weights(str(directory)).model.eval()
        for a, b in zip(run(model, pixel_values, input_ids), run(reloaded, pixel_values, input_ids)):
            assert torch.equal(a, b)
        reference = reference_cls.from_pretrained(directory).eval()
        with torch.no_grad():
            expected = reference(pixel_values=pixel_values, input_ids=input_ids)
        with reference_query_ranking(model, expected.enc_outputs_class[..., : input_ids.shape[1]], MODEL_ULPS):
            logits, boxes = run(model, pixel_values, input_ids)
        assert_within_ulps(logits, expected.logits[..., : input_ids.shape[1]], MODEL_ULPS)
        assert_within_ulps(boxes, expected.pred_boxes, MODEL_ULPS)


def test_half_precision_storage_loads_into_float32(tmp_path):
    model = randomized(True)
    directory = save_hf_checkpoint(model, tmp_path, dtype=torch.float16)
    reloaded = load_weights(str(directory)).model
    for (name, saved), original in zip(reloaded.state_dict().items(), model.state_dict().values()):
        assert saved.dtype == original.dtype, name
        assert torch.equal(saved, original.half().float()), name  # float16 to float32 is exact
