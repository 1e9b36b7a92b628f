"""`gdino`: one console command; each subcommand lives in its own module with `register(subparsers)`.

Errors users can fix are raised as :class:`CliError` and printed as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from perception.cli.errors import CliError

# Subcommand modules, each exposing register(subparsers) that adds parsers with a `run` default.
SUBCOMMAND_MODULES = (
    "perception.cli.detect",
    "perception.cli.bench",
    "perception.cli.eval",
    "perception.cli.train",
    "perception.cli.demo_clip",
    "perception.cli.video",
    "perception.cli.bag",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdino", description="Open-set detection with Grounding DINO.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="gdino: %(levelname)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except CliError as error:
        print(f"gdino {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gdino {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
