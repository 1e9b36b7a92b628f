"""Training batches: each image gets its own prompt (present phrases plus absent ones, as
MM-Grounding-DINO mixes negatives in), tokenized as inference tokenizes, with token-level targets."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from perception.model.tokenizer import PromptTokenizer
from perception.preprocess import PreprocessConfig, as_rgb_tensor, pad_batch, preprocess
from perception.training.prompts import PromptConfig, sample_prompt
from perception.training.targets import GroundingTarget, build_target, token_map_from_spans
from perception.training.trainer import Batch


def make_batch(samples: Sequence, vocabulary: Sequence[str], tokenizer: PromptTokenizer, rng: np.random.Generator,
               prompt_config: PromptConfig, preprocess_config: PreprocessConfig) -> Batch:
    images, input_ids, targets = [], [], []
    for sample in samples:
        prompt = sample_prompt(sample.labels, vocabulary, rng, prompt_config)
        chunks = tokenizer.chunk_prompt(prompt.text)
        if len(chunks) != 1 or tuple(chunks[0].phrases) != prompt.phrases:
            raise ValueError(f"training prompt {prompt.text[:80]!r} does not fit one chunk: lower max_phrases")
        chunk = chunks[0]
        token_map = token_map_from_spans(chunk.phrase_token_spans, chunk.input_ids.shape[1])
        targets.append(build_target(sample, prompt, token_map))
        input_ids.append(chunk.input_ids)
        images.append(preprocess(as_rgb_tensor(sample.image), preprocess_config))
    pixel_values, padding = pad_batch(images)
    return Batch(pixel_values, padding, input_ids, targets)


def batch_stream(dataset: Dataset, batch_size: int, vocabulary: Sequence[str], tokenizer: PromptTokenizer,
                 seed: int, prompt_config: PromptConfig, preprocess_config: PreprocessConfig, workers: int = 0):
    """batches(start_iteration): iteration i always uses the same images and prompts, so a resumed run
    continues exactly where it stopped. With workers > 0, that many processes make the batches ahead of the
    model (a GPU step is faster than one process draws 16 scenes); worker k makes iterations start + k,
    start + k + workers, ... and they are handed out in turn, so the stream is the same as with none."""
    def make(iteration: int) -> Batch:
        rng = np.random.default_rng([seed, iteration])
        first = iteration * batch_size
        samples = [dataset[(first + k) % len(dataset)] for k in range(batch_size)]
        return make_batch(samples, vocabulary, tokenizer, rng, prompt_config, preprocess_config)

    def batches(start_iteration: int) -> Iterator[Batch]:
        source = _IterationBatches(make, start_iteration)
        if not workers:
            return iter(source)
        return iter(DataLoader(source, batch_size=None, num_workers=workers, prefetch_factor=4,
                               multiprocessing_context="fork"))  # `make` is a closure
    return batches


class _IterationBatches(IterableDataset):
    """The endless batches from start on: in the training process all of them, in DataLoader workers split by
    iteration (DataLoader takes one from each worker in turn, which restores the order)."""

    def __init__(self, make, start: int) -> None:
        self.make, self.start = make, start

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        index, count = (info.id, info.num_workers) if info is not None else (0, 1)
        iteration = self.start + index
        while True:
            yield self.make(iteration)
            iteration += count


def padded_targets(targets: Sequence[GroundingTarget], num_tokens: int) -> list[GroundingTarget]:
    """Targets widened to the batch's padded text length."""
    return [target.padded(num_tokens) for target in targets]


def grounding_criterion(loss):
    """loss(outputs, targets) with each image's targets widened to the batch's padded text length."""
    def criterion(outputs, targets):
        return loss(outputs, padded_targets(targets, outputs.logits.shape[-1]))
    return criterion
