"""Command line: `python -m vitnb COMMAND --help`."""

from __future__ import annotations

import argparse

from . import data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vitnb", description="vitnb: the Vision Transformer on a CPU")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-data", help="put Fashion-MNIST under data/ (Debian package or download)")
    fetch.add_argument("--root", default=None, help="target folder (default: data/ or $VITNB_DATA)")
    fetch.set_defaults(func=lambda args: print(f"Fashion-MNIST ready in {data.fetch_fashion_mnist(args.root)}"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
