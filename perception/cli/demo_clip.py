"""`gdino demo-clip OUT.mp4`: write the demo's generated clip and print a prompt naming its objects."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo-clip", help="write the demo's generated video of moving shapes")
    parser.add_argument("output", help="MP4 file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perception.demo_clip import write_demo_clip

    print(" . ".join(write_demo_clip(args.output)) + " .")
    return 0
