"""Our detector against transformers' GroundingDinoForObjectDetection in one process, on identical
random weights and identical inputs, with a per-stage split of where the time goes."""
from __future__ import annotations

import numpy as np
import torch

from perception.bench.measure import PeakResident, StageTimer, median_ms
from perception.detector import DetectorConfig, GroundingDinoDetector
from perception.model.checkpoint import load_hf_state_dict
from perception.model.grounding_dino import GroundingDino
from perception.model.hf_config import config_from_hf
from perception.model.tokenizer import PromptTokenizer, default_vocab_file
from perception.postprocess import PostprocessConfig
from perception.preprocess import PreprocessConfig, as_rgb_tensor, preprocess

PROMPT = "a person . a red mug . a traffic cone . a dog . a bicycle ."


def reference_model(size: str):
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

    torch.manual_seed(0)
    if size == "swint":  # Grounding-DINO-T: Swin-T + BERT-base, the published tiny checkpoint's shapes
        config = GroundingDinoConfig(
            backbone_config=SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                       out_indices=[2, 3, 4]),
            text_config=BertConfig())
    else:
        config = GroundingDinoConfig(
            backbone_config=SwinConfig(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], out_indices=[2, 3, 4]),
            text_config=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=30,
            encoder_attention_heads=4, decoder_attention_heads=4)
    return GroundingDinoForObjectDetection(config).eval()


def test_image(height: int, width: int) -> np.ndarray:
    """A deterministic image with structure (gradients and blocks), not noise."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([(xs * 255 // max(width - 1, 1)), (ys * 255 // max(height - 1, 1)),
                      ((xs // 64 + ys // 64) % 2) * 200], -1)
    return image.astype(np.uint8)


def run(size: str = "swint", frame_sizes=((800, 1333), (480, 640)), repeats: int = 3,
        implementation: str = "auto") -> dict:
    from transformers import BertTokenizer, GroundingDinoImageProcessorPil, GroundingDinoProcessor

    reference = reference_model(size)
    model = GroundingDino(config_from_hf(reference.config.to_dict()))
    load_hf_state_dict(model, reference.state_dict())
    tokenizer = PromptTokenizer.from_vocab_file(None, model.config.max_text_len)
    processor = GroundingDinoProcessor(GroundingDinoImageProcessorPil(), BertTokenizer(vocab=str(default_vocab_file())))
    input_ids = tokenizer.chunk_prompt(PROMPT)[0].input_ids
    result = {"model": "Grounding-DINO-T shapes (Swin-T + BERT-base)" if size == "swint" else "tiny",
              "weights": "random", "dtype": "float32", "device": "cpu", "threads": torch.get_num_threads(),
              "prompt": PROMPT, "repeats": repeats, "sizes": {}}
    for height, width in frame_sizes:
        image = test_image(height, width)
        # Frames enter the model at their own size, so both sides see exactly height x width pixels.
        config = DetectorConfig(preprocess=PreprocessConfig(shortest_edge=min(height, width),
                                                            longest_edge=max(height, width)),
                                postprocess=PostprocessConfig(), attention_implementation=implementation)
        detector = GroundingDinoDetector(model, tokenizer, config=config, description="random")
        text_ms = median_ms(lambda: detector._encode_prompt(PROMPT), repeats=1, warmup=0)
        detector.set_prompt(PROMPT)
        pixel_values = preprocess(as_rgb_tensor(image), config.preprocess)[None]
        pixel_mask = torch.ones(1, height, width, dtype=torch.long)

        def reference_call():
            with torch.inference_mode():
                outputs = reference(pixel_values=pixel_values, input_ids=input_ids, pixel_mask=pixel_mask)
                outputs.input_ids = input_ids
                processor.post_process_grounded_object_detection(outputs, threshold=0.35, text_threshold=0.25,
                                                                 target_sizes=[(height, width)])

        stages = {"backbone": model.image_backbone, "encoder": model.feature_enhancer,
                  "query_selection": model.query_selection, "decoder": model.decoder}
        ours_timer = StageTimer(stages)
        with PeakResident() as ours_memory:
            ours_ms = median_ms(lambda: detector.detect([image]), repeats)
        ours_timer.remove()
        reference_stages = {"backbone": reference.model.backbone, "text": reference.model.text_backbone,
                            "encoder": reference.model.encoder, "decoder": reference.model.decoder}
        reference_timer = StageTimer(reference_stages)
        with PeakResident() as reference_memory:
            reference_ms = median_ms(reference_call, repeats)
        reference_timer.remove()
        calls = repeats + 1  # warm-up included in the stage sums
        ours_split = {name: round(seconds * 1000 / calls, 1) for name, seconds in ours_timer.seconds.items()}
        ours_split["text"] = 0.0
        ours_split["text_once_per_prompt"] = round(text_ms, 1)
        ours_split["preprocess_and_postprocess"] = round(
            (detector.last_stage_times.preprocess + detector.last_stage_times.postprocess) * 1000, 1)
        reference_split = {name: round(seconds * 1000 / calls, 1) for name, seconds in reference_timer.seconds.items()}
        result["sizes"][f"{height}x{width}"] = {
            "ours_ms": round(ours_ms, 1), "reference_ms": round(reference_ms, 1),
            "ratio": round(ours_ms / reference_ms, 3),
            "peak_memory_mb": {"ours": round((ours_memory.peak - ours_memory.start) / 2**20, 1),
                               "reference": round((reference_memory.peak - reference_memory.start) / 2**20, 1)},
            "stages_ms": {"ours": ours_split, "reference": reference_split},
        }
    first = result["sizes"][f"{frame_sizes[0][0]}x{frame_sizes[0][1]}"]
    result.update(ours_ms=first["ours_ms"], reference_ms=first["reference_ms"], ratio=first["ratio"])
    return result
