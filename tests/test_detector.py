"""The detector: text encoded once per prompt, batching, chunked prompts, and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.detector import DetectorConfig, GroundingDinoDetector
from perception.model.config import tiny_model_config
from perception.model.tokenizer import PromptTokenizer
from perception.postprocess import PostprocessConfig, postprocess
from perception.preprocess import PreprocessConfig
from tolerances import MODEL_ULPS, assert_within_ulps, ulps_of

pytestmark = pytest.mark.numeric
SMALL_IMAGES = PreprocessConfig(shortest_edge=96, longest_edge=160)


def make_detector(**overrides) -> GroundingDinoDetector:
    torch.manual_seed(0)
    config = DetectorConfig(preprocess=SMALL_IMAGES, postprocess=PostprocessConfig(box_threshold=0.0), **overrides)
    return GroundingDinoDetector.from_model_config(tiny_model_config(), config=config)


@pytest.fixture(scope="module")
def detector():
    return make_detector()


def frames(count: int, height: int = 90, width: int = 120, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def assert_same(a, b):
    """Bit for bit: for results of the same kernels on the same inputs."""
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)


def assert_close(a, b):
    """Within MODEL_ULPS of the largest pixel coordinate and score: for another batch size or path."""
    assert a.labels == b.labels
    assert_within_ulps(a.boxes, b.boxes, MODEL_ULPS)
    assert_within_ulps(a.scores, b.scores, MODEL_ULPS)


def test_text_is_encoded_once_per_distinct_prompt():
    detector = make_detector(batch_size=8)
    detector.set_prompt("a person . a red mug .")
    assert detector.text_encoder_calls == 1
    all_frames = frames(100, 48, 64)
    for start in range(0, 100, 5):  # 100 frames in 20 calls, the prompt set again before each
        detector.set_prompt("a person . a red mug .")
        detector.detect(all_frames[start : start + 5])
    assert detector.text_encoder_calls == 1
    detector.set_prompt("a dog .")
    detector.set_prompt("a person . a red mug .")  # still cached
    assert detector.text_encoder_calls == 2


def test_prompt_cache_evicts_the_oldest_prompt():
    detector = make_detector(prompt_cache_size=2)
    for prompt in ("a .", "b .", "c .", "a ."):
        detector.set_prompt(prompt)
    assert detector.text_encoder_calls == 4


def test_cached_and_uncached_results_are_identical(detector):
    images = frames(2)
    detector.set_prompt("a person . a red mug .")
    cached = detector.detect(images)
    fresh = make_detector()
    fresh.model.load_state_dict(detector.model.state_dict())
    fresh.set_prompt("a person . a red mug .")
    for a, b in zip(cached, fresh.detect(images)):
        assert_same(a, b)


def test_batched_results_equal_one_by_one(detector):
    images = frames(3) + frames(1, 70, 150, seed=5)
    detector.set_prompt("a person . a red mug .")
    batched = detector.detect(images)
    for image, result in zip(images, batched):
        assert_close(detector.detect([image])[0], result)


def test_detector_equals_a_direct_model_call(detector):
    detector.set_prompt("a person . a red mug . a traffic cone .")
    image = frames(1)[0]
    (ours,) = detector.detect([image])
    tokenizer = PromptTokenizer.from_vocab_file(None, 256)
    (chunk,) = tokenizer.chunk_prompt("a person . a red mug . a traffic cone .")
    pixel = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    pixel = torch.nn.functional.interpolate(pixel, size=(96, 128), mode="bilinear", align_corners=False, antialias=True)
    pixel = (pixel / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        output = detector.model(pixel, torch.zeros(1, 96, 128, dtype=torch.bool), detector.model.encode_text(chunk.input_ids))
    expected = postprocess(output.logits[0], output.boxes[0], chunk, (90, 120), detector.config.postprocess, tokenizer)
    assert_close(ours, expected)


def test_long_prompts_are_chunked_at_phrase_boundaries():
    detector = make_detector()
    phrases = [f"object number {i}" for i in range(120)]  # about 480 tokens: two chunks
    detected_phrases = detector.set_prompt(" . ".join(phrases))
    assert detected_phrases == phrases
    chunks = detector._prompt.chunks
    assert len(chunks) == 2 and detector.text_encoder_calls == 2
    assert all(chunk.input_ids.shape[1] <= 256 for chunk, _ in chunks)
    detector.config.text_threshold = 0.0
    (result,) = detector.detect(frames(1))
    first_chunk, second_chunk = (set(chunk.phrases) for chunk, _ in chunks)
    assert set(result.labels) & first_chunk and set(result.labels) & second_chunk
    assert set(result.labels) <= set(phrases)
    assert len(result) == 2 * tiny_model_config().num_queries
    assert np.all(np.diff(result.scores) <= 0)


def test_the_backbone_runs_once_per_frame_batch_whatever_the_number_of_chunks():
    detector = make_detector()
    detector.set_prompt(" . ".join(f"object number {i}" for i in range(120)))  # two chunks
    calls = []
    hook = detector.model.image_backbone.register_forward_hook(lambda *_: calls.append(1))
    try:
        detector.detect(frames(3))  # one size: one batch
    finally:
        hook.remove()
    assert len(detector._prompt.chunks) == 2 and len(calls) == 1
    # The image features are only read: reusing them gives exactly what computing them per chunk gives.
    pixel_values, padding = torch.randn(2, 3, 96, 128), torch.zeros(2, 96, 128, dtype=torch.bool)
    with torch.no_grad():
        features = detector.model.encode_image(pixel_values, padding)
        for _, text in detector._prompt.chunks:
            reused = detector.model(pixel_values, padding, text, image_features=features)
            fresh = detector.model(pixel_values, padding, text)
            assert torch.equal(reused.logits, fresh.logits) and torch.equal(reused.boxes, fresh.boxes)


def test_a_prompt_that_fits_gives_the_same_result_through_the_chunking_path():
    detector = make_detector()
    prompt = " . ".join(f"thing {i}" for i in range(60))  # about 180 tokens: one chunk
    detector.set_prompt(prompt)
    assert len(detector._prompt.chunks) == 1
    (chunked,) = detector.detect(frames(1))
    direct_chunk = detector.tokenizer.chunk_prompt(prompt)[0]
    assert torch.equal(direct_chunk.input_ids, detector._prompt.chunks[0][0].input_ids)
    assert len(chunked) == tiny_model_config().num_queries


@pytest.mark.parametrize("prompt, message", [
    ("", "names nothing"),
    (" . . . ", "names nothing"),
    ("word " * 400, "tokens long"),
])
def test_bad_prompts_give_clear_errors(detector, prompt, message):
    with pytest.raises(ValueError, match=message):
        detector.set_prompt(prompt)


def test_a_ten_thousand_character_prompt_of_phrases_works(detector):
    prompt = " . ".join(["a red mug"] * 1000)[:10_000]
    assert len(prompt) == 10_000
    phrases = detector.set_prompt(prompt)
    assert len(phrases) > 800
    assert len(detector.detect(frames(1, 48, 64))) == 1


def test_non_ascii_prompts_work(detector):
    assert detector.set_prompt("un café . 猫 . Ölkanne .") == ["un café", "猫", "Ölkanne"]
    (result,) = detector.detect(frames(1))
    assert set(result.labels) <= {"un café", "猫", "Ölkanne", ""}


def test_bad_images_give_clear_errors(detector):
    detector.set_prompt("a person .")
    with pytest.raises(ValueError, match="zero size"):
        detector.detect([np.zeros((0, 10, 3), np.uint8)])
    with pytest.raises(TypeError, match="uint8"):
        detector.detect([np.zeros((10, 10, 3), np.float64)])
    with pytest.raises(ValueError, match="RGB"):
        detector.detect([np.zeros((10, 10, 4), np.uint8)])
    nan_image = torch.rand(3, 20, 20)
    nan_image[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        detector.detect([nan_image])
    with pytest.raises(TypeError, match="list of images"):
        detector.detect(np.zeros((10, 10, 3), np.uint8))


def test_grayscale_images_equal_their_rgb_version(detector):
    detector.set_prompt("a person .")
    gray = frames(1)[0][..., 0]
    assert_same(detector.detect([gray])[0], detector.detect([np.repeat(gray[..., None], 3, -1)])[0])


def test_no_prompt_is_an_error():
    with pytest.raises(RuntimeError, match="set_prompt"):
        make_detector().detect(frames(1))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_runs_and_stays_close(dtype):
    reference = make_detector()
    reference.set_prompt("a person . a red mug .")
    half = GroundingDinoDetector(type(reference.model)(reference.model.config), reference.tokenizer,
                                 config=reference.config, dtype=dtype)
    half.model.load_state_dict(reference.model.state_dict())
    half.set_prompt("a person . a red mug .")
    image = frames(1)[0]
    (low,), (full,) = half.detect([image]), reference.detect([image])
    assert np.isfinite(low.scores).all() and len(low) == len(full)
    # Both lists are sorted, so the k-th scores differ by no more than the largest change of any one score;
    # the median, because at near-ties query selection may keep another query in half precision (one score
    # 170 float16 ulps off seen). Medians seen: at most 1.4 ulps of the half type at the top score (1.0).
    # Smaller errors than half precision's own (all weights 2% off, say) cannot be told apart here.
    differences = np.abs(low.scores - full.scores)
    assert np.median(differences) <= ulps_of(full.scores, 4, dtype=getattr(torch, dtype)), differences


def test_thresholds_change_between_calls(detector):
    detector.set_prompt("a person .")
    detector.config.box_threshold = 1.0
    assert len(detector.detect(frames(1))[0]) == 0
    detector.config.box_threshold = 0.0
    assert len(detector.detect(frames(1))[0]) > 0


def test_a_call_can_lower_the_box_threshold_without_changing_the_config(detector):
    detector.set_prompt("a person . a dog .")
    image = frames(1)
    everything = detector.detect(image)[0]  # configured threshold 0
    cut = float(np.median(everything.scores))
    detector.config.box_threshold = cut
    detector.config.replace_postprocess(present_phrase_threshold=None)  # only box_threshold cuts
    try:
        above = detector.detect(image)[0]
        lowered = detector.detect(image, box_threshold=0.0)[0]
        assert detector.box_threshold == detector.config.box_threshold == cut
        assert 0 < len(above) < len(lowered) and (above.scores > cut).all()
        np.testing.assert_array_equal(lowered.boxes, everything.boxes)
        np.testing.assert_array_equal(lowered.scores, everything.scores)
    finally:
        detector.config.replace_postprocess(box_threshold=0.0,
                                            present_phrase_threshold=PostprocessConfig.present_phrase_threshold)


def test_boxes_a_lowered_threshold_adds_carry_their_phrase_below_the_text_threshold(detector):
    """A tracker lowers the box threshold to continue its tracks with weak boxes (continue_threshold); a box
    scored below text_threshold must still carry its best phrase, since "" continues no track of any phrase.
    A threshold the user configures that low keeps the reference's rule: such boxes are unnamed."""
    detector.set_prompt("a person . a dog .")
    image = frames(1)
    scores = detector.detect(image)[0].scores
    text_cut, box_cut = (float(np.quantile(scores, q)) for q in (0.5, 0.75))
    try:
        detector.config.text_threshold = 0.0
        named = detector.detect(image)[0]  # configured box threshold 0: every box named by its best phrase
        detector.config.text_threshold = text_cut
        unnamed = detector.detect(image)[0]  # configured that low: the reference's rule
        detector.config.box_threshold = box_cut
        lowered = detector.detect(image, box_threshold=0.0)[0]
    finally:
        detector.config.box_threshold, detector.config.text_threshold = 0.0, PostprocessConfig().text_threshold
    assert set(named.labels) <= {"a person", "a dog"}
    weak = unnamed.scores <= text_cut
    assert weak.any() and all(label == "" for label, is_weak in zip(unnamed.labels, weak) if is_weak)
    assert lowered.labels == named.labels
    np.testing.assert_array_equal(lowered.scores, named.scores)
