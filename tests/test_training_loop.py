"""The training loop: a tiny model overfits a few generated scenes, and a resumed run continues exactly."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from perception.model.config import tiny_model_config
from perception.model.grounding_dino import GroundingDino
from perception.model.tokenizer import PromptTokenizer
from perception.preprocess import PreprocessConfig
from perception.training.batches import batch_stream, grounding_criterion
from perception.training.dataset import SyntheticGroundingDataset
from perception.training.losses import GroundingLoss
from perception.training.prompts import PromptConfig
from perception.training.train_bundled import VOCABULARY
from perception.training.trainer import Trainer, TrainConfig

SIZE = 128


def make_trainer(output, iterations: int, images: int = 2, learning_rate: float = 1e-3) -> Trainer:
    torch.manual_seed(0)
    config = dataclasses.replace(tiny_model_config(), contrastive_bias=True, num_queries=20)
    model = GroundingDino(config)
    tokenizer = PromptTokenizer.from_vocab_file(None, 256)
    dataset = SyntheticGroundingDataset(5_000, images, (SIZE, SIZE))
    batches = batch_stream(dataset, 2, VOCABULARY, tokenizer, 0, PromptConfig(max_negatives=2),
                           PreprocessConfig(shortest_edge=SIZE, longest_edge=SIZE))
    config = TrainConfig(iterations=iterations, learning_rate=learning_rate, backbone_learning_rate=learning_rate,
                         warmup_iterations=5, checkpoint_every=3, log_every=10)
    return Trainer(model, batches, grounding_criterion(GroundingLoss()), config, output)


def test_a_tiny_model_overfits_two_scenes(tmp_path):
    trainer = make_trainer(tmp_path, iterations=60)
    first = trainer.step(next(trainer.batches(0)))["loss"]
    trainer.iteration = 0
    last = trainer.train()["loss"]
    assert last < 0.6 * first, (first, last)


@pytest.mark.numeric
def test_resumed_training_continues_exactly(tmp_path):
    straight = make_trainer(tmp_path / "straight", iterations=6)
    straight.train()
    interrupted = make_trainer(tmp_path / "resumed", iterations=6)
    stream = interrupted.batches
    interrupted.batches = lambda start: itertools.islice(stream(start), 3 - start)  # the run dies after 3 steps
    interrupted.train()
    assert interrupted.iteration == 3 and interrupted.checkpoint_path.is_file()
    resumed = make_trainer(tmp_path / "resumed", iterations=6)
    resumed.train()
    assert resumed.iteration == 6
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name  # the same kernels on the same numbers, as they were when it stopped


def test_batches_drawn_by_worker_processes_are_the_batches_drawn_in_the_training_process():
    tokenizer = PromptTokenizer.from_vocab_file(None, 256)
    dataset = SyntheticGroundingDataset(5_000, 50, (SIZE, SIZE))
    streams = [batch_stream(dataset, 2, VOCABULARY, tokenizer, 0, PromptConfig(max_negatives=2),
                            PreprocessConfig(shortest_edge=SIZE, longest_edge=SIZE), workers)(3) for workers in (0, 2)]
    for alone, drawn in itertools.islice(zip(*streams), 7):  # more batches than workers: their turns come round
        assert torch.equal(alone.pixel_values, drawn.pixel_values)
        assert all(torch.equal(a, b) for a, b in zip(alone.input_ids, drawn.input_ids))
        assert all(torch.equal(a.boxes, b.boxes) and torch.equal(a.positive_map, b.positive_map)
                   for a, b in zip(alone.targets, drawn.targets))


def test_a_timed_run_fixes_its_iteration_count_after_timing_the_start_and_stops_there(tmp_path, caplog):
    trainer = make_trainer(tmp_path, iterations=10_000)
    trainer.config.warmup_iterations = 30
    with caplog.at_level("INFO", logger="perception.training.trainer"):
        trainer.train(seconds=0.001)  # less than the timed iterations took: it stops right after them
    assert trainer.iteration == trainer.config.iterations == 26
    assert "repeat with --iterations 26" in caplog.text
    short = make_trainer(tmp_path / "short", iterations=100)  # warm-up 5: the timing would fall after it
    with pytest.raises(ValueError, match="warmup_iterations >= 25"):
        short.train(seconds=60)


def test_a_resumed_timed_run_times_the_iterations_after_its_checkpoint(tmp_path):
    interrupted = make_trainer(tmp_path, iterations=10_000)
    interrupted.config.warmup_iterations = 40
    stream = interrupted.batches
    interrupted.batches = lambda start: itertools.islice(stream(start), 10)  # dies after 10; checkpoint at 9
    interrupted.train()
    resumed = make_trainer(tmp_path, iterations=10_000)
    resumed.config.warmup_iterations = 40
    resumed.train(seconds=0.001)  # times iterations 14-34 after the checkpoint, then stops
    assert resumed.iteration == resumed.config.iterations == 35


def test_a_non_finite_loss_stops_training(tmp_path):
    trainer = make_trainer(tmp_path, iterations=2)
    trainer.criterion = lambda outputs, targets: {"loss": outputs.logits.sum() * float("nan")}
    with pytest.raises(FloatingPointError, match="iteration 0"):
        trainer.step(next(trainer.batches(0)))


def test_gdino_train_fine_tunes_a_checkpoint_and_exports_it(tmp_path, capsys):
    from perception.cli.main import main
    from perception.model.hf_export import save_hf_checkpoint
    from perception.training.dataset import write_synthetic_dataset
    from perception.weights import load_weights

    annotations = write_synthetic_dataset(tmp_path / "data", seeds=[1, 2, 3], size=(96, 128))
    start = GroundingDino(tiny_model_config())
    save_hf_checkpoint(start, tmp_path / "start",
                       preprocess=PreprocessConfig(shortest_edge=96, longest_edge=128))
    code = main(["train", "--data", str(annotations), "--weights", str(tmp_path / "start"),
                 "--output", str(tmp_path / "run"), "--iterations", "2", "--batch-size", "2",
                 "--export", str(tmp_path / "tuned")])
    assert code == 0
    assert "training Hugging Face checkpoint" in capsys.readouterr().out
    tuned = load_weights(str(tmp_path / "tuned"))
    assert tuned.preprocess.shortest_edge == 96
    changed = [not torch.equal(a, b) for a, b in zip(start.state_dict().values(), tuned.model.state_dict().values())]
    assert any(changed)


def test_gdino_train_reports_a_missing_dataset(tmp_path, capsys):
    from perception.cli.main import main

    assert main(["train", "--data", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "run"),
                 "--weights", "random:tiny"]) == 2
    assert "none.jsonl" in capsys.readouterr().err
