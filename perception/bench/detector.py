"""Our detector against transformers' GroundingDinoForObjectDetection in one process, on identical
random weights and identical inputs, on any device and dtype, with a per-stage split of where the time
goes (CPU only: the stage hooks read wall time, which on a GPU is the launch time).

What is timed: ours end to end (uint8 frames on the host -> detections on the host: copy, preprocessing,
text features from the prompt cache, model, post-processing); transformers' model forward on the same
preprocessed pixels already on the device, text encoder included (it has no way to reuse text features),
without its post-processing (that needs Pillow, absent on bare GPU machines). The comparison is
therefore conservative for ours.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from perception.bench.floor import floor
from perception.bench.long_prompts import time_long_prompt
from perception.bench.measure import StageTimer, interleaved_latencies_ms, latencies_ms, latency_summary, median_ms
from perception.detector import DTYPES, DetectorConfig, GroundingDinoDetector, resolve_device
from perception.model.checkpoint import load_hf_state_dict
from perception.model.grounding_dino import GroundingDino
from perception.model.hf_config import config_from_hf
from perception.model.tokenizer import PromptTokenizer
from perception.postprocess import PostprocessConfig
from perception.precision import resolve_dtype
from perception.preprocess import PreprocessConfig, as_rgb_tensor, pad_batch, preprocess
from perception.weights import BUNDLED_MODEL_DIR

PROMPT = "a person . a red mug . a traffic cone . a dog . a bicycle ."
# bert-base-uncased's vocabulary, as the bundled model ships it: the benchmark then needs no other package.
VOCAB_FILE: Path = BUNDLED_MODEL_DIR / "vocab.txt"


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


def paired_models(size: str) -> tuple[torch.nn.Module, GroundingDino]:
    """(transformers' model, ours) on the CPU in float32 with identical random weights."""
    reference = reference_model(size)
    model = GroundingDino(config_from_hf(reference.config.to_dict()))
    load_hf_state_dict(model, reference.state_dict())
    return reference, model.eval()


def test_image(height: int, width: int, shift: int = 0) -> np.ndarray:
    """A deterministic image with structure (gradients and blocks), not noise; ``shift`` moves the blocks."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([(xs * 255 // max(width - 1, 1)), (ys * 255 // max(height - 1, 1)),
                      (((xs + shift) // 64 + ys // 64) % 2) * 200], -1)
    return image.astype(np.uint8)


def _megabytes(module: torch.nn.Module) -> float:
    return round(sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20, 1)


def run(size: str = "swint", frame_sizes=((800, 1333), (480, 640)), repeats: int = 3, implementation: str = "auto",
        device: str = "cpu", dtype: str = "auto", compile: bool = False, batch_sizes=(1,), warmup: int = 1,
        prompt: str = PROMPT, phrases: tuple[int, ...] = (), reference_dtype: str | None = None,
        with_floor: bool = False) -> dict:
    """Time ours (eager, and compiled when ``compile``) in ``dtype`` and transformers in ``reference_dtype``
    (default: ``dtype``) on every frame size and batch size.

    returns: the settings, and per "HxW" size and batch size p50/p95 latency of one call, frames per second
    and peak memory growth for each side, with ratio = ours p50 / transformers p50. The first size's batch of
    ``batch_sizes[0]`` is repeated at the top (ours_ms, reference_ms, ratio) as the headline figure.

    phrases: instead of ``prompt``, prompts of so many distinct phrases (perception.bench.long_prompts), each
    timed on every frame size with a batch of ``batch_sizes[0]`` (eager only); per count and size under
    "phrases", the first count's first size at the top, with its ``chunks`` and ``chunk_cost_ratio``.

    with_floor: also "floor" (perception.bench.floor) for the first size and batch size: the forward's GFLOP
    at the best product rate in ``dtype`` on this machine, and that time over transformers' (floor_ratio).
    """
    if phrases and with_floor:
        raise ValueError("the floor (--floor) is measured with the short prompt: drop --phrases")
    device = resolve_device(device)  # a GPU torch does not see is refused before any model is built
    dtype = resolve_dtype(dtype, device)
    reference_dtype = reference_dtype or dtype
    reference, model = paired_models(size)
    reference.to(device, DTYPES[reference_dtype])
    tokenizer = PromptTokenizer.from_vocab_file(VOCAB_FILE, model.config.max_text_len)
    input_ids = tokenizer.chunk_prompt(prompt)[0].input_ids.to(device)
    result = {"model": "Grounding-DINO-T shapes (Swin-T + BERT-base)" if size == "swint" else "tiny",
              "weights": "random", "dtype": dtype, "reference_dtype": reference_dtype,
              "device": str(device), "implementation": implementation,
              "threads": torch.get_num_threads(), "prompt": prompt, "repeats": repeats, "warmup": warmup,
              "weights_mib": {"ours": None, "reference": _megabytes(reference)}, "sizes": {}}
    if phrases:
        result.update(prompt=None, phrases={str(count): {} for count in phrases})
    for height, width in frame_sizes:
        # Frames enter the model at their own size, so both sides see exactly height x width pixels.
        config = DetectorConfig(preprocess=PreprocessConfig(shortest_edge=min(height, width),
                                                            longest_edge=max(height, width)),
                                postprocess=PostprocessConfig(), attention_implementation=implementation,
                                batch_size=max(batch_sizes))
        detector = GroundingDinoDetector(model, tokenizer, config=config, device=device, dtype=dtype,
                                         description="random")
        result["weights_mib"]["ours"] = _megabytes(detector.model)
        if phrases:
            frames = [test_image(height, width, shift=17 * index) for index in range(batch_sizes[0])]
            for count in phrases:
                result["phrases"][str(count)][f"{height}x{width}"] = time_long_prompt(
                    detector, lambda ids: _reference_call(reference, frames, detector, ids), frames, count,
                    repeats, warmup)
            continue
        compiled = (GroundingDinoDetector(model, tokenizer, config=dataclasses.replace(config, compile=True),
                                          device=device, dtype=dtype, description="random") if compile else None)
        text_ms = median_ms(lambda: detector._encode_prompt(prompt), repeats=1, warmup=0)
        for detector_ in (detector, compiled):
            if detector_ is not None:
                detector_.set_prompt(prompt)
        per_batch = {}
        for batch in batch_sizes:
            frames = [test_image(height, width, shift=17 * index) for index in range(batch)]
            entry = _time_batch(detector, compiled, reference, frames, input_ids, device, repeats, warmup)
            if device.type == "cpu" and batch == batch_sizes[0]:
                entry["stages_ms"] = _stage_split(detector, reference, frames, input_ids, text_ms)
            if with_floor and batch == batch_sizes[0] and "floor" not in result:
                result["floor"] = floor(_reference_call(reference, frames, detector, input_ids), DTYPES[dtype],
                                        device, (entry["reference"] or {}).get("p50_ms"))
            per_batch[str(batch)] = entry
        result["sizes"][f"{height}x{width}"] = per_batch
    first_size = f"{frame_sizes[0][0]}x{frame_sizes[0][1]}"
    if phrases:
        first = result["phrases"][str(phrases[0])][first_size]
        result.update(chunks=first["chunks"], chunk_cost_ratio=first["chunk_cost_ratio"])
    else:
        first = result["sizes"][first_size][str(batch_sizes[0])]
    result.update(ours_ms=first["ours"]["p50_ms"], reference_ms=(first["reference"] or {}).get("p50_ms"),
                  ratio=first["ratio"])
    return result


def _reference_call(reference, frames: list[np.ndarray], detector: GroundingDinoDetector, input_ids):
    """A closure running transformers' forward on the frames preprocessed as ours preprocesses them."""
    images = [preprocess(as_rgb_tensor(frame, detector.device), detector.config.preprocess) for frame in frames]
    pixel_values, padding = pad_batch(images)
    pixel_values = pixel_values.to(next(reference.parameters()).dtype)
    pixel_mask = (~padding).long()
    batch_ids = input_ids.expand(len(frames), -1)

    def call():
        with torch.inference_mode():
            return reference(pixel_values=pixel_values, input_ids=batch_ids, pixel_mask=pixel_mask)
    return call


def _time_batch(detector, compiled, reference, frames, input_ids, device, repeats: int, warmup: int) -> dict:
    """Ours (and compiled) and transformers on the same frames, called in turns (interleaved_latencies_ms)."""
    entry = {}
    runs = {"ours": lambda: detector.detect(frames)}
    if compiled is not None:
        compile_ms = latencies_ms(lambda: compiled.detect(frames), 1, 0, device)[0]
        runs["compiled"] = lambda: compiled.detect(frames)
    try:
        runs["reference"] = _reference_call(reference, frames, detector, input_ids)
        times, peak_mib = interleaved_latencies_ms(runs, repeats, warmup, device)
    except (RuntimeError, ValueError, TypeError) as error:  # transformers' own limits (e.g. a dtype it lacks)
        runs.pop("reference", None)
        times, peak_mib = interleaved_latencies_ms(runs, repeats, warmup, device)
        entry["reference"], entry["ratio"] = None, None
        entry["reference_error"] = f"{type(error).__name__}: {error}"
    for name in runs:
        entry[name] = {**latency_summary(times[name], len(frames)), "peak_memory_mib": peak_mib[name]}
    if compiled is not None:
        entry["compiled"]["first_call_s"] = round(compile_ms / 1000, 1)
    if "reference" in runs:
        entry["ratio"] = round(entry["ours"]["p50_ms"] / entry["reference"]["p50_ms"], 3)
    return entry


def _stage_split(detector, reference, frames, input_ids, text_ms: float) -> dict:
    """Mean milliseconds per call in each stage, both sides, over one warm-up and one timed call."""
    stages = {"backbone": detector.model.image_backbone, "encoder": detector.model.feature_enhancer,
              "query_selection": detector.model.query_selection, "decoder": detector.model.decoder}
    timer = StageTimer(stages)
    median_ms(lambda: detector.detect(frames), 1)
    timer.remove()
    ours = {name: round(seconds * 1000 / 2, 1) for name, seconds in timer.seconds.items()}
    ours["text"] = 0.0
    ours["text_once_per_prompt"] = round(text_ms, 1)
    ours["preprocess_and_postprocess"] = round(
        (detector.last_stage_times.preprocess + detector.last_stage_times.postprocess) * 1000, 1)
    reference_stages = {"backbone": reference.model.backbone, "text": reference.model.text_backbone,
                        "encoder": reference.model.encoder, "decoder": reference.model.decoder}
    timer = StageTimer(reference_stages)
    median_ms(_reference_call(reference, frames, detector, input_ids), 1)
    timer.remove()
    return {"ours": ours, "reference": {name: round(seconds * 1000 / 2, 1) for name, seconds in timer.seconds.items()}}
