"""Train the bundled models from a fixed seed on generated scenes and export them in the Hugging Face layout: the
bundled model in two stages, ``python -m perception.training.train_bundled --output runs/bundled --export
runs/bundled/model`` (9500 iterations), then ``--stage crowds --init runs/bundled/model --output runs/bundled_crowds
--export perception/assets/bundled_model``; the bundled crowd model (``--weights bundled:crowds``) from it, on a GPU
``--stage crowds-long --init perception/assets/bundled_model --output runs/bundled_long --export
runs/bundled_long/model --device cuda --workers 12``, then on the CPU ``--stage crowds-amodal --init
runs/bundled_long/model --output runs/bundled_amodal --export runs/bundled_amodal/model --seed 1`` and
``--stage crowds-pillars --init runs/bundled_amodal/model --output runs/bundled_pillars --export
perception/assets/bundled_crowd_model --seed 2``.

The second stage (1500 iterations at a third of the rate) goes on with still images of crowds of one phrase
mixed in (its crowd_share of the images), since a model that has only seen a few objects per phrase finds a
handful of a crowd of eight, and exports the average of its weights and the first stage's (init_share; see
blend_with_init). Measured on fresh images: the average finds 0.49-0.51 of the walkers of a crowd (the first
stage 0.20-0.22) and gains 0.6 AP points on the default scenes; the stage's own weights find 0.80-0.82 but lose
1.2 AP points (3000 iterations: 0.88-0.90 and 1.1, over the 90-minute budget with the first stage). The crowd
model's stage goes on from that average with the same mix, 1628 steps of 16 images (4.3 times the second stage's
images; 6.5 minutes on an H200), and exports its own weights: it finds about 0.9 of a crowd's walkers for 0.8 AP
points and more identity switches on the default videos (the README's Training section). The crowd model's next
stage, crowds-amodal, goes on from it at half the rate (1130 steps of 16 images, 38 minutes on 2 CPU cores) with
the L1 and GIoU losses of a partly hidden object's box counting 1 + 2 x its hidden share (LossConfig.
hidden_box_weight): it found more walkers in still crowds, tracked fresh crowd videos with fewer identity switches
and kept default AP, though its boxes of partly hidden walkers fit no better (the README's Training section).
The crowd model ships crowds-pillars, which goes on from that with the same settings (1000 steps, 35 minutes)
on crowd images that hold 0-5 pillars instead of 0-2, so more walkers show only the part beside a pillar: it
tracked fresh crowd videos with fewer switches and higher IDF1 again, and kept default AP; the same steps with the
usual 0-2 pillars did as well, so the gain is the longer training. ``--stage mixed``
instead trains from scratch with crowds in the mix from the start (7000 iterations, so that it fits the first
stage's time with the crowd images' extra cost): measured, crowd recall 0.77 but default AP 0.81.
Each stage resumes from ``<output>/last.pt`` when run again; ``--export DIR`` writes its final weights (for
crowds, blended).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from perception.model.grounding_dino import GroundingDino
from perception.model.hf_export import save_hf_checkpoint
from perception.model.tokenizer import PromptTokenizer, default_vocab_file
from perception.preprocess import PreprocessConfig
from perception.training.batches import batch_stream, grounding_criterion
from perception.training.bundled import (IMAGE_SIZE, TRAIN_FIRST_SEED, bundled_model_config,
                                         initialize_text_embeddings)
from perception.training.crowds import CROWD
from perception.training.dataset import CrowdGroundingDataset, MixtureDataset, SyntheticGroundingDataset
from perception.training.losses import GroundingLoss, LossConfig
from perception.training.prompts import PromptConfig
from perception.training.sprites import COLOUR_HUES, KINDS
from perception.training.trainer import Trainer, TrainConfig
from perception.weights import checkpoint_vocab_file, load_hf_directory

logger = logging.getLogger(__name__)
VOCABULARY = sorted(f"{colour} {kind}" for colour in COLOUR_HUES for kind in KINDS)
# Trained and exported at this input size, so the checkpoint asks inference for what training saw.
PREPROCESS = PreprocessConfig(shortest_edge=IMAGE_SIZE, longest_edge=IMAGE_SIZE)
# Where the crowd images' seeds start (apart from the scenes' 1,000,000.. and from the evaluation's crowd seeds
# below 1,000,000).
CROWD_FIRST_SEED = 60_000_000
# Stage "mixed" trains from scratch, as "scenes" does, with crowds in the mix from the first iteration.
# init_share: the export is init_share x the --init weights + (1 - init_share) x the trained ones (a weight-space
# ensemble of the fine-tuned model and the one it started from, WiSE-FT); see blend_with_init.
# "crowds-long" goes on from the crowds stage's export with 16 images a step (4.3 times the crowds stage's images)
# and exports its own weights (the bundled crowd model): 6.5 minutes on an H200 (--device cuda --workers 12),
# about 73 minutes on 2 CPU cores, 158 with the first two stages. "crowds-amodal" goes on from that at half the rate
# with hidden_box_weight (the stages without one: 0); 1130 is the count --seconds 2100 fixed on 2 Zen 4 cores.
# "crowds-pillars" goes on from crowds-amodal's export with its settings and crowd_pillars (the crowd images'
# CrowdGroundingDataset.max_pillars; the stages without one: CrowdConfig's 2).
STAGES = {"scenes": {"iterations": 9500, "learning_rate": 3e-4, "warmup": 100, "crowd_share": 0.0, "init_share": 0.0,
                     "batch_size": 4},
          "crowds": {"iterations": 1500, "learning_rate": 1e-4, "warmup": 50, "crowd_share": 0.35, "init_share": 0.5,
                     "batch_size": 4},
          "crowds-long": {"iterations": 1628, "learning_rate": 1e-4, "warmup": 50, "crowd_share": 0.35,
                          "init_share": 0.0, "batch_size": 16},
          "crowds-amodal": {"iterations": 1130, "learning_rate": 5e-5, "warmup": 30, "crowd_share": 0.35,
                            "init_share": 0.0, "batch_size": 16, "hidden_box_weight": 2.0},
          "crowds-pillars": {"iterations": 1000, "learning_rate": 5e-5, "warmup": 30, "crowd_share": 0.35,
                             "init_share": 0.0, "batch_size": 16, "hidden_box_weight": 2.0, "crowd_pillars": 5},
          "mixed": {"iterations": 7000, "learning_rate": 3e-4, "warmup": 100, "crowd_share": 0.25, "init_share": 0.0,
                    "batch_size": 4}}
STAGES_FROM_INIT = ("crowds", "crowds-long", "crowds-amodal", "crowds-pillars")


def stage_dataset(stage: str):
    """The generated scenes, with crowds (CrowdGroundingDataset) as the stage's crowd_share of the images."""
    scenes = SyntheticGroundingDataset(TRAIN_FIRST_SEED, 50_000_000, (IMAGE_SIZE, IMAGE_SIZE))
    share = STAGES[stage]["crowd_share"]
    if not share:
        return scenes
    crowds = CrowdGroundingDataset(CROWD_FIRST_SEED, 50_000_000,
                                   max_pillars=STAGES[stage].get("crowd_pillars", CROWD.max_pillars))
    return MixtureDataset([scenes, crowds], [1 - share, share])


def build_trainer(output: Path, iterations: int, batch_size: int, seed: int, stage: str = "scenes",
                  init: Path | None = None, device: str = "cpu", workers: int = 0) -> Trainer:
    torch.manual_seed(seed)
    if init is not None:
        # Its own vocabulary (the bert-base-uncased one it was trained with): a machine without the MiniLM package
        # (a GPU machine) can go on from it.
        loaded = load_hf_directory(init)
        model, vocabulary_file = loaded.model.float(), loaded.vocab_file
    else:
        model, vocabulary_file = GroundingDino(bundled_model_config()), None
        initialize_text_embeddings(model)
    tokenizer = PromptTokenizer.from_vocab_file(vocabulary_file, model.config.max_text_len)
    settings = STAGES[stage]
    dataset = stage_dataset(stage)
    # One prompt in five names absent phrases only, and about a third of the negatives are attribute
    # negatives ("red car" beside a purple car): the 7000-iteration model trained without them fired on
    # 17.6% of absent-only prompts of the 500 evaluation scenes, nearly all on an object of the named kind
    # in another colour; this one (9500 iterations) on 7.4%.
    prompts = PromptConfig(max_negatives=6, attribute_negative_fraction=0.35, absent_only_probability=0.2)
    batches = batch_stream(dataset, batch_size, VOCABULARY, tokenizer, seed, prompts, PREPROCESS, workers)
    # The Swin starts from random weights and trains at the full rate; only the PCA-initialized text
    # encoder, which needs to keep its pretrained geometry, moves slower.
    config = TrainConfig(iterations=iterations or settings["iterations"], learning_rate=settings["learning_rate"],
                         backbone_learning_rate=settings["learning_rate"] / 2,
                         backbone_prefixes=("text_encoder.bert.",), warmup_iterations=settings["warmup"],
                         checkpoint_every=100, log_every=20)
    loss = GroundingLoss(LossConfig(hidden_box_weight=settings.get("hidden_box_weight", 0.0)))
    return Trainer(model.to(device), batches, grounding_criterion(loss), config, output)


def export_vocab_file(init: Path | None) -> Path:
    """The vocabulary an export carries: the --init model's (checkpoint_vocab_file), else the package's."""
    return (checkpoint_vocab_file(init) if init is not None else None) or default_vocab_file()


def blend_with_init(model: torch.nn.Module, init: torch.nn.Module, init_share: float) -> None:
    """Move ``model``'s floating-point weights in place to init_share x ``init``'s + (1 - init_share) x their own.
    Both come from one architecture and ``model`` was trained from ``init``, so the straight line between them
    stays a working model (Wortsman et al., "Robust fine-tuning of zero-shot models", 2022)."""
    # named_parameters and named_buffers list a tensor shared by two modules (the decoder's box heads) once; the
    # state_dict lists it under each name, and would blend it twice.
    init_tensors = {**dict(init.named_parameters()), **dict(init.named_buffers())}
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point():
                tensor.mul_(1.0 - init_share).add_(init_tensors[name].to(tensor), alpha=init_share)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True, help="folder for checkpoints (resumes from it)")
    parser.add_argument("--stage", choices=tuple(STAGES), default="scenes",
                        help="scenes: from scratch ({scenes} iterations); crowds: from --init with crowds mixed in "
                             "({crowds}); crowds-long: the same from the crowds stage's export, 16 images a step "
                             "({crowds-long}; made on a GPU); crowds-amodal: from the crowds-long export at half "
                             "the rate, partly hidden objects' box losses weighted up ({crowds-amodal}); "
                             "crowds-pillars: the same from the crowds-amodal export, crowd images with up to 5 "
                             "pillars ({crowds-pillars}); mixed: from scratch with crowds mixed in ({mixed})".format(
                                 **{stage: settings["iterations"] for stage, settings in STAGES.items()}))
    parser.add_argument("--init", type=Path, default=None,
                        help=f"start from this exported model (the crowd stages: {', '.join(STAGES_FROM_INIT)})")
    parser.add_argument("--iterations", type=int, default=None, help="default: the stage's")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the stage's ({} 16, else 4)".format(
                            ", ".join(stage for stage, settings in STAGES.items() if settings["batch_size"] == 16)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", type=Path, default=None, help="write the trained model here (HF layout)")
    parser.add_argument("--init-share", type=float, default=None,
                        help="export this share of the --init weights blended with the trained ones, in [0, 1) "
                             "(default: the stage's, crowds {crowds})".format(
                                 **{stage: settings["init_share"] for stage, settings in STAGES.items()}))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the model trains (the scenes are drawn on the CPU either way)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that draw the batches ahead of the model (0: the training process draws "
                             "them; a GPU needs several); the batches are the same either way")
    parser.add_argument("--seconds", type=float, default=None,
                        help="train for about this long: the iteration count is fixed after timing the first 25 "
                             "and logged (instead of --iterations)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda, but this torch ({torch.__version__}, built for CUDA {torch.version.cuda}) "
                     "finds no GPU; train on --device cpu, or install a CUDA build of torch on a machine with one")
    if args.workers < 0 or (args.seconds is not None and (args.seconds <= 0 or args.iterations is not None)):
        parser.error("--workers must be >= 0, and --seconds > 0 and not with --iterations")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if (args.stage in STAGES_FROM_INIT) != (args.init is not None):
        parser.error("--stage crowds needs --init (the first stage's export), and so do crowds-long (the crowds "
                     "stage's), crowds-amodal (crowds-long's) and crowds-pillars (crowds-amodal's); no other stage "
                     "takes one")
    init_share = STAGES[args.stage]["init_share"] if args.init_share is None else args.init_share
    if not 0.0 <= init_share < 1.0 or (init_share and args.init is None):
        parser.error(f"--init-share must be in [0, 1) and needs --init (the crowd stages); got {init_share}")
    batch_size = STAGES[args.stage]["batch_size"] if args.batch_size is None else args.batch_size
    trainer = build_trainer(args.output, args.iterations, batch_size, args.seed, args.stage, args.init,
                            args.device, args.workers)
    trainer.train(args.seconds)
    trainer.model.cpu()
    if args.export:
        if init_share:
            blend_with_init(trainer.model, load_hf_directory(args.init).model.float(), init_share)
        save_hf_checkpoint(trainer.model, args.export, vocab_file=export_vocab_file(args.init), dtype=torch.float16,
                           preprocess=PREPROCESS)
        logger.info("exported to %s: %s", args.export, f"{init_share} x {args.init} + {1 - init_share:g} x the trained "
                    "weights" if init_share else "the trained weights")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
