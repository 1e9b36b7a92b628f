"""Detection AP of a detector on held-out generated scenes, with prompts that name the scene's objects
plus absent phrases (so a detector that fires on every phrase is penalized)."""
from __future__ import annotations

import numpy as np

from perception.eval.detection import evaluate_detections
from perception.postprocess import PostprocessConfig
from perception.training.dataset import SyntheticGroundingDataset
from perception.training.prompts import PromptConfig, build_prompt, sample_prompt

EVAL_FIRST_SEED = 0  # training uses seeds from 1,000,000 on (perception.training.bundled)


def evaluate_on_generated_scenes(detector, vocabulary: list[str], num_images: int = 500, size: int = 256,
                                 seed: int = 0, absent_only_threshold: float = PostprocessConfig.box_threshold
                                 ) -> dict[str, float]:
    """AP over ``num_images`` scenes of seeds EVAL_FIRST_SEED..; each image is detected with its own prompt.

    Every present phrase is named (nothing is dropped) and 3-6 absent phrases are mixed in. Then each
    scene once more with a prompt of four absent phrases only: ``absent_only_empty`` is the share of
    those that return no box above ``absent_only_threshold`` (the default box threshold).
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
    metrics = evaluate_detections(predictions, truths)
    absent_rng = np.random.default_rng(seed + 1)
    empty = 0
    for sample in truths:
        absent = [phrase for phrase in vocabulary if phrase not in sample.labels]
        phrases = absent_rng.choice(absent, size=min(4, len(absent)), replace=False)
        detector.set_prompt(build_prompt(list(phrases)).text)
        empty += int(len(detector.detect([sample.image], box_threshold=absent_only_threshold)[0]) == 0)
    return {**metrics, "absent_only_empty": round(empty / max(1, len(truths)), 4),
            "absent_only_threshold": absent_only_threshold}
