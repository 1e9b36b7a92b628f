"""`gdino`: one console command; each subcommand lives in its own module with `register(subparsers)`.

Every command ends with an exit code of perception.cli.errors and never with a traceback: a
:class:`CliError` is one line and ``EXIT_USAGE``; Ctrl-C or SIGTERM, at any moment from the first import
on, is one line and ``EXIT_INTERRUPTED``; any other exception is a fault of ours, one line and
``EXIT_INTERNAL``, with its traceback only under ``-v``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from perception.cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, CliError
from perception.pipeline_stages import StopSignals

# Each subcommand's module, exposing register(subparsers) that adds its parser with a `run` default.
SUBCOMMANDS = {
    "detect": "perception.cli.detect",
    "bench": "perception.cli.bench",
    "eval": "perception.cli.eval",
    "train": "perception.cli.train",
    "demo-clip": "perception.cli.demo_clip",
    "video": "perception.cli.video",
    "bag": "perception.cli.bag",
    "label": "perception.cli.label",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `command` alone: some modules import torch (seconds), and
    `gdino video missing.mp4` should answer at once."""
    parser = argparse.ArgumentParser(prog="gdino", description="Open-set detection with Grounding DINO.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        if command not in SUBCOMMANDS or name == command:
            importlib.import_module(module_name).register(subparsers)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _run(argv: list[str], signals: StopSignals) -> int:
    """Parse and run one command; every way it can end becomes an exit code and at most one stderr line."""
    # Known before parsing, which imports the subcommand's module and may itself be interrupted.
    word = next((word for word in argv if not word.startswith("-")), None)
    command = f"gdino {word}" if word in SUBCOMMANDS else "gdino"
    verbose = "-v" in argv or "--verbose" in argv
    try:
        args = build_parser(word).parse_args(argv)
        command = f"gdino {args.command}"
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                            format="gdino: %(levelname)s: %(message)s")
        code = int(args.run(args) or 0)
    except CliError as error:
        print(f"{command}: error: {_one_line(error)}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception as error:
        if signals.received:  # the interrupt surfaced as another error, e.g. an ImportError inside an import
            code = EXIT_INTERRUPTED
        else:
            if verbose:
                traceback.print_exc()
            print(f"{command}: internal error: {type(error).__name__}: {_one_line(error)}"
                  + ("" if verbose else " (run with -v for the traceback)"), file=sys.stderr)
            code = EXIT_INTERNAL
    if signals.received or code == EXIT_INTERRUPTED:  # a signal swallowed on the way still ends the command so
        print(f"{command}: interrupted" + (f" by {signals.received}" if signals.received else ""), file=sys.stderr)
        code = EXIT_INTERRUPTED
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with StopSignals() as signals:  # every signal raises KeyboardInterrupt, and is remembered
            return _run(argv, signals)
    except KeyboardInterrupt:  # a second signal while the first was being reported
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
