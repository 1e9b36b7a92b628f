"""The training loop: AdamW with warm-up and cosine decay, gradient clipping, checkpoints that resume
exactly (model, optimizer, schedule, data position), and progress (loss, iterations/s, ETA) in the log.

It serves fine-tuning a published checkpoint and training a small configuration from scratch alike:
the model, the data and the loss are passed in.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from perception.model.grounding_dino import GroundingDino
from perception.model.text_encoder import EncodedText
from perception.training.targets import GroundingTarget

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    iterations: int = 6000
    learning_rate: float = 2e-4
    backbone_learning_rate: float = 1e-4  # parameters under backbone_prefixes (pretrained parts)
    backbone_prefixes: tuple[str, ...] = ("image_backbone.swin.", "text_encoder.bert.")
    weight_decay: float = 1e-4
    warmup_iterations: int = 200  # linear warm-up from 1% of the learning rate
    max_grad_norm: float = 0.1  # DETR-family models train unstably without tight clipping
    checkpoint_every: int = 500
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("iterations, checkpoint_every and log_every must be >= 1")
        if not (self.learning_rate > 0 and self.backbone_learning_rate >= 0 and self.weight_decay >= 0):
            raise ValueError("learning rates must be > 0 (backbone >= 0) and weight_decay >= 0")
        if self.warmup_iterations < 0 or self.max_grad_norm <= 0:
            raise ValueError("warmup_iterations must be >= 0 and max_grad_norm > 0")


@dataclass
class Batch:
    """One training step's input.

    pixel_values: (B, 3, H, W) normalized; image_padding_mask: (B, H, W) True = padding.
    input_ids: per image (1, Nt_i) prompt tokens (prompts differ per image).
    targets: per image a GroundingTarget ((n, 4) normalized cxcywh boxes, (n, Nt_i) bool positive map).
    """

    pixel_values: torch.Tensor
    image_padding_mask: torch.Tensor
    input_ids: list[torch.Tensor]
    targets: list[GroundingTarget]

    def to(self, device: torch.device) -> "Batch":
        """The batch on `device`."""
        return Batch(self.pixel_values.to(device), self.image_padding_mask.to(device),
                     [ids.to(device) for ids in self.input_ids],
                     [target.to(device) for target in self.targets])


def encode_prompts(model: GroundingDino, input_ids: list[torch.Tensor]) -> EncodedText:
    """Encode each prompt on its own (as inference does) and pad the results into one batch."""
    encoded = [model.encode_text(ids) for ids in input_ids]
    length = max(text.features.shape[1] for text in encoded)

    def pad(tensor: torch.Tensor, value) -> torch.Tensor:
        extra = length - tensor.shape[1]
        if tensor.ndim == 3 and tensor.dtype == torch.bool:  # (1, L, L) attention mask
            grown = torch.nn.functional.pad(tensor, (0, extra, 0, extra), value=False)
            return grown | torch.eye(length, dtype=torch.bool, device=tensor.device)  # padding attends to itself
        shape = (0, 0, 0, extra) if tensor.ndim == 3 else (0, extra)
        return torch.nn.functional.pad(tensor, shape, value=value)

    return EncodedText(
        features=torch.cat([pad(t.features, 0.0) for t in encoded]),
        token_mask=torch.cat([pad(t.token_mask, False) for t in encoded]),
        self_attention_mask=torch.cat([pad(t.self_attention_mask, False) for t in encoded]),
        position_ids=torch.cat([pad(t.position_ids, 0) for t in encoded]),
        input_ids=torch.cat([pad(t.input_ids, 0) for t in encoded]),
    )


def parameter_groups(model: GroundingDino, config: TrainConfig) -> list[dict]:
    backbone, rest = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (backbone if name.startswith(config.backbone_prefixes) else rest).append(parameter)
    return [{"params": rest, "lr": config.learning_rate},
            {"params": backbone, "lr": config.backbone_learning_rate}]


def schedule(config: TrainConfig) -> Callable[[int], float]:
    def factor(iteration: int) -> float:
        if iteration < config.warmup_iterations:
            return 0.01 + 0.99 * iteration / config.warmup_iterations
        progress = (iteration - config.warmup_iterations) / max(1, config.iterations - config.warmup_iterations)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


class Trainer:
    def __init__(self, model: GroundingDino, batches: Callable[[int], Iterator[Batch]],
                 criterion: Callable[..., dict[str, torch.Tensor]], config: TrainConfig, output_dir: str | Path):
        """batches(start_iteration) yields the batches from that iteration on (deterministic per iteration,
        so a resumed run sees the same data). criterion(outputs, targets) returns named losses including
        "loss", the total to minimize."""
        self.model, self.batches, self.criterion, self.config = model, batches, criterion, config
        self.output_dir = Path(output_dir)
        # fused: one kernel over all parameters (torch >= 2.4 has it on CPU and CUDA); the per-tensor loop took
        # 27 of a bundled-model step's ~480 ms on 2 CPU cores, fused 7
        self.optimizer = torch.optim.AdamW(parameter_groups(model, config), weight_decay=config.weight_decay,
                                           fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule(config))
        self.iteration = 0
        self.device = next(model.parameters()).device  # each batch goes where the model is

    @property
    def checkpoint_path(self) -> Path:
        return self.output_dir / "last.pt"

    def save(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint_path.with_suffix(".partial")
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "iteration": self.iteration,
                    "torch_rng": torch.get_rng_state(),  # dropout and drop-path continue where they were
                    "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                    "config": asdict(self.config)}, partial)
        os.replace(partial, self.checkpoint_path)  # a crash mid-save never leaves a broken checkpoint

    def resume(self) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = state["iteration"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        logger.info("resumed from %s at iteration %d", self.checkpoint_path, self.iteration)
        return True

    def step(self, batch: Batch) -> dict[str, float]:
        self.model.train()
        batch = batch.to(self.device)
        text = encode_prompts(self.model, batch.input_ids)
        outputs = self.model(batch.pixel_values, batch.image_padding_mask, text, return_auxiliary=True)
        losses = self.criterion(outputs, batch.targets)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"loss is {float(losses['loss'].detach())} at iteration {self.iteration}")
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        values = torch.stack([value.detach().float() for value in losses.values()]).tolist()  # one copy to the host
        return dict(zip(losses, values))

    def train(self, seconds: float | None = None) -> dict[str, float]:
        """Run to config.iterations (resuming first if a checkpoint exists); returns the last losses.

        seconds: train for about this long instead. The rate is timed over the iterations 5-25 of this run
        (the first ones pay for start-up), then config.iterations is fixed so that the rest fits (and logged:
        --iterations with that number repeats the run anywhere); the schedule's decay follows it. Those first
        iterations must fall inside the warm-up, whose shape does not depend on config.iterations (so a run
        resumed past it goes on with --iterations)."""
        self.resume()
        timing = (self.iteration + 5, self.iteration + 25) if seconds is not None else None
        if timing and timing[1] > self.config.warmup_iterations:
            raise ValueError(f"a timed run needs warmup_iterations >= {timing[1]} (it times those iterations "
                             f"before it fixes the total); got {self.config.warmup_iterations}: give the "
                             "iteration count instead")
        started, start_iteration, running, last = time.perf_counter(), self.iteration, {}, {}
        for batch in self.batches(self.iteration):
            if self.iteration >= self.config.iterations:
                break
            last = self.step(batch)
            if timing and self.iteration in timing:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                now = time.perf_counter()
                if self.iteration == timing[0]:
                    timed_from = now
                else:
                    rate = (timing[1] - timing[0]) / (now - timed_from)
                    left = seconds - (now - started)
                    self.config.iterations = self.iteration + max(1, int(rate * left))
                    logger.info("timed %.2f it/s over iterations %d-%d: %d iterations fit %d s (repeat with "
                                "--iterations %d)", rate, *timing, self.config.iterations, seconds,
                                self.config.iterations)
            for name, value in last.items():
                running[name] = 0.9 * running.get(name, value) + 0.1 * value
            if self.iteration % self.config.log_every == 0 or self.iteration == self.config.iterations:
                rate = (self.iteration - start_iteration) / (time.perf_counter() - started)
                eta = (self.config.iterations - self.iteration) / max(rate, 1e-9)
                logger.info("iteration %d/%d  loss %.4f  %.2f it/s  eta %dm%02ds  %s", self.iteration,
                            self.config.iterations, running["loss"], rate, eta // 60, eta % 60,
                            " ".join(f"{k} {v:.3f}" for k, v in running.items() if k != "loss"))
            if self.iteration % self.config.checkpoint_every == 0 or self.iteration == self.config.iterations:
                self.save()
        self.model.eval()
        return last
