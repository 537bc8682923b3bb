"""`f2i-mobile`: a thin command line. Each subcommand is a module here with `add_parser` and
`run`; `run` calls one library function and prints. Heavy imports happen inside `run`, so
`--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from f2i_mobile.errors import F2IError

# Subcommand name -> module in this package.
COMMANDS = {
    "upscale": "upscale",
    "info": "info",
    "bench": "bench",
    "train": "train",
    "eval": "eval",
    "export": "export",
    "parity": "parity",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="f2i-mobile",
        description="F2IDiff-SR toolkit: one-step diffusion 4x super-resolution, from training "
                    "to phone NPUs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(f"f2i_mobile.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from f2i_mobile.quiet import quiet_libraries

    quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except F2IError as exc:
        print(f"f2i-mobile: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("f2i-mobile: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("f2i-mobile: error: out of memory; use a smaller input or tile", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line unless asked for the traceback
        if os.environ.get("F2I_MOBILE_DEBUG"):
            raise
        print(f"f2i-mobile: internal error: {type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:400]} (set F2I_MOBILE_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
