"""`f2i-mobile bench`: latency of an export's graphs on a phone over adb, or on this machine.
The arguments and the work live in `android_bench` (also `python -m android_bench`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    from android_bench.cli import DESCRIPTION, add_arguments

    p = sub.add_parser(
        "bench", help="latency of exported graphs on a phone (adb) or this machine (--host)",
        description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from android_bench.cli import run as run_bench

    return run_bench(args)
