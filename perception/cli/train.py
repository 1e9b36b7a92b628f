"""`gdino train --data FILE --output DIR`: fine-tune a checkpoint (or train a configuration from scratch)
on a grounding dataset (JSON Lines or COCO detection file), then export it in the Hugging Face layout."""
from __future__ import annotations

import argparse
from pathlib import Path

from perception.cli.errors import CliError


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="fine-tune or train on a grounding dataset", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help=".jsonl grounding records or COCO .json file")
    parser.add_argument("--output", type=Path, required=True, help="checkpoint folder (a rerun resumes from it)")
    parser.add_argument("--weights", default=None,
                        help="starting checkpoint: directory, .pth, hub id, bundled, random:tiny (default: "
                             "bundled:crowds, the default bundled model)")
    parser.add_argument("--preset", default=None, help="architecture preset for an original .pth file")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--backbone-learning-rate", type=float, default=1e-5,
                        help="for the pretrained Swin and BERT (default 1e-5)")
    parser.add_argument("--max-negatives", type=int, default=8, help="absent phrases mixed into each prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", type=Path, default=None, help="write the trained model here (HF layout)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from perception.model.hf_export import save_hf_checkpoint
    from perception.model.tokenizer import PromptTokenizer
    from perception.preprocess import PreprocessConfig
    from perception.training.batches import batch_stream, grounding_criterion
    from perception.training.dataset import GroundingFileDataset
    from perception.training.losses import GroundingLoss
    from perception.training.prompts import PromptConfig, vocabulary_of
    from perception.training.trainer import Trainer, TrainConfig
    from perception.weights import WeightsError, load_weights

    try:
        dataset = GroundingFileDataset(args.data)
        loaded = load_weights(args.weights, args.preset)
        config = TrainConfig(iterations=args.iterations, learning_rate=args.learning_rate,
                             backbone_learning_rate=args.backbone_learning_rate)
        prompts = PromptConfig(max_negatives=args.max_negatives)
    except (OSError, ValueError, WeightsError) as error:
        raise CliError(str(error)) from error
    if len(dataset) == 0:
        raise CliError(f"{args.data} holds no images")
    torch.manual_seed(args.seed)
    tokenizer = PromptTokenizer.from_vocab_file(loaded.vocab_file, loaded.model.config.max_text_len)
    preprocess = loaded.preprocess or PreprocessConfig()
    vocabulary = vocabulary_of(record.labels for record in dataset.records)
    batches = batch_stream(dataset, args.batch_size, vocabulary, tokenizer, args.seed, prompts, preprocess)
    trainer = Trainer(loaded.model, batches, grounding_criterion(GroundingLoss()), config, args.output)
    print(f"training {loaded.description} on {len(dataset)} images, {len(vocabulary)} phrases")
    trainer.train()
    if args.export:
        save_hf_checkpoint(trainer.model, args.export, vocab_file=loaded.vocab_file, preprocess=preprocess)
        print(f"exported to {args.export}")
    return 0
