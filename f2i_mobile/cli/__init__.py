"""`f2i-mobile`: a thin command line. Each subcommand is a module here with `add_parser` and
`run`; `run` calls one library function and prints. Heavy imports happen inside `run`, so
`--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

from f2i_mobile.core.errors import guarded

# Subcommand name -> module in this package.
COMMANDS = {
    "upscale": "upscale",
    "info": "info",
    "bench": "bench",
    "train": "train",
    "distill": "distill",
    "eval": "eval",
    "export": "export",
    "parity": "parity",
    "quant-check": "quant_check",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="f2i-mobile",
        description="F2IDiff-SR toolkit: one-step diffusion 4x super-resolution, from training "
                    "to phone NPUs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        importlib.import_module(f"f2i_mobile.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from f2i_mobile.core.quiet import quiet_libraries

    quiet_libraries()
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
