"""DetectorConfig(compile=True) runs the model under torch.compile and finds what eager finds."""
from __future__ import annotations

import pytest

from perception.detector import DetectorConfig, GroundingDinoDetector
from perception.postprocess import PostprocessConfig
from perception.training.synthetic import generate_scene
from tolerances import MODEL_ULPS, assert_within_ulps

# Inductor compiles the bundled model's two graphs (image encoding, the rest) in about 5 minutes on 2 busy
# cores (2 minutes of it the backbone): slow.
pytestmark = [pytest.mark.slow, pytest.mark.numeric]


def test_the_compiled_model_finds_what_the_eager_model_finds_on_the_bundled_model():
    eager = GroundingDinoDetector.from_pretrained(None, config=DetectorConfig(
        postprocess=PostprocessConfig(box_threshold=0.05)))
    config = DetectorConfig(preprocess=eager.config.preprocess, postprocess=eager.config.postprocess, compile=True)
    compiled = GroundingDinoDetector(eager.model, eager.tokenizer, config=config)
    scenes = [generate_scene(seed, (256, 256)) for seed in (1000, 1001)]  # held-out scenes (not trained on)
    prompt = " . ".join(sorted({item.phrase for scene in scenes for item in scene.objects}))
    eager.set_prompt(prompt)
    compiled.set_prompt(prompt)
    # Two frames of one size: the second runs the graphs the first compiled.
    for scene in scenes:
        frame = scene.image
        (expected,), (actual,) = eager.detect([frame]), compiled.detect([frame])
        assert len(expected) > 0 and actual.labels == expected.labels
        # Inductor fuses and reorders float32 sums as another CPU kernel would (see tolerances.MODEL_ULPS).
        assert_within_ulps(actual.boxes, expected.boxes, MODEL_ULPS)
        assert_within_ulps(actual.scores, expected.scores, MODEL_ULPS)
