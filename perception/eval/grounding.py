"""Detection AP of a detector on held-out generated scenes, with prompts that name the scene's objects
plus absent phrases (so a detector that fires on every phrase is penalized)."""
from __future__ import annotations

import numpy as np

from perception.eval.detection import evaluate_detections
from perception.training.dataset import SyntheticGroundingDataset
from perception.training.prompts import PromptConfig, sample_prompt

EVAL_FIRST_SEED = 0  # training uses seeds from 1,000,000 on (perception.training.bundled)


def evaluate_on_generated_scenes(detector, vocabulary: list[str], num_images: int = 500, size: int = 256,
                                 seed: int = 0) -> dict[str, float]:
    """AP over ``num_images`` scenes of seeds EVAL_FIRST_SEED..; each image is detected with its own prompt.

    Every present phrase is named (nothing is dropped) and 3-6 absent phrases are mixed in.
    """
    dataset = SyntheticGroundingDataset(EVAL_FIRST_SEED, num_images, (size, size))
    prompts = PromptConfig(min_negatives=3, max_negatives=6, drop_positive_probability=0.0)
    rng = np.random.default_rng(seed)
    predictions, truths = [], []
    for index in range(num_images):
        sample = dataset[index]
        detector.set_prompt(sample_prompt(sample.labels, vocabulary, rng, prompts).text)
        predictions.extend(detector.detect([sample.image]))
        truths.append(sample)
    return evaluate_detections(predictions, truths)
